//! The plugin's config document and the service-account key inside it.

use serde::Deserialize;
use sluice_sdk::prelude::*;

pub const DEFAULT_API_BASE: &str = "https://bigquery.googleapis.com";
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The service-account key file's JSON text (`type: service_account`).
    #[serde(default)]
    pub credentials_json: Option<String>,
    /// An OAuth access token, instead of a key (e.g. `gcloud auth print-access-token`).
    #[serde(default)]
    pub access_token: Option<String>,
    /// The project jobs run (and are billed) in; the key's `project_id` otherwise.
    #[serde(default)]
    pub project_id: Option<String>,
    /// The region jobs run in (`US`, `EU`, `europe-west1`…), repeated on every poll.
    #[serde(default)]
    pub location: Option<String>,
    /// A job that would bill more bytes fails instead (`bytesBilledLimitExceeded`).
    #[serde(default)]
    pub maximum_bytes_billed: Option<u64>,
    /// Resolves unqualified table names, and is what `discover` lists.
    #[serde(default)]
    pub default_dataset: Option<String>,
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// Where the key's JWT is exchanged for a token; the key's `token_uri` when unset.
    #[serde(default)]
    pub token_uri: Option<String>,
    /// Rows per result page (`maxResults`); pages are also capped at 20 MB by BigQuery.
    #[serde(default = "default_page_rows")]
    pub page_rows: u32,
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// The longest the plugin waits for a job whose `jobComplete` is false.
    #[serde(default = "default_max_poll_ms")]
    pub max_poll_ms: u64,
    /// Retries of a 429, 5xx, `rateLimitExceeded`/`backendError` or transport failure.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
}

fn default_api_base() -> String {
    DEFAULT_API_BASE.into()
}
fn default_page_rows() -> u32 {
    10_000
}
fn default_request_timeout_ms() -> u64 {
    60_000
}
fn default_max_poll_ms() -> u64 {
    600_000
}
fn default_max_retries() -> u32 {
    6
}

/// The fields of a service-account key the plugin uses.
#[derive(Deserialize, Clone, Debug)]
pub struct ServiceAccountKey {
    #[serde(rename = "type", default)]
    pub kind: String,
    pub client_email: String,
    pub private_key: String,
    #[serde(default)]
    pub private_key_id: Option<String>,
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub token_uri: Option<String>,
}

/// How requests authenticate.
pub enum Credentials {
    ServiceAccount(ServiceAccountKey),
    AccessToken(String),
}

impl Config {
    pub fn parse(text: &str) -> Result<Self, PluginError> {
        let mut config: Config = parse_config(text)?;
        config.api_base = config.api_base.trim_end_matches('/').to_string();
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), PluginError> {
        for (key, url) in [
            ("api_base", Some(&self.api_base)),
            ("token_uri", self.token_uri.as_ref()),
        ] {
            if let Some(url) = url {
                if !url.starts_with("https://") && !url.starts_with("http://") {
                    return Err(PluginError::Config(format!(
                        "`{key}` must start with https:// (or http:// for an emulator): {url:?}"
                    )));
                }
            }
        }
        if self.page_rows == 0 || self.request_timeout_ms == 0 || self.max_poll_ms == 0 {
            return Err(PluginError::Config(
                "`page_rows`, `request_timeout_ms` and `max_poll_ms` must be at least 1".into(),
            ));
        }
        self.credentials()?;
        self.project()?;
        Ok(())
    }

    pub fn credentials(&self) -> Result<Credentials, PluginError> {
        match (&self.credentials_json, &self.access_token) {
            (Some(json), None) => Ok(Credentials::ServiceAccount(parse_key(json)?)),
            (None, Some(token)) => Ok(Credentials::AccessToken(token.clone())),
            (Some(_), Some(_)) => Err(PluginError::Config(
                "set one of `credentials_json` and `access_token`, not both".into(),
            )),
            (None, None) => Err(PluginError::Config(
                "set `credentials_json` (a service-account key) or `access_token`".into(),
            )),
        }
    }

    /// The project jobs run in: `project_id`, else the key's.
    pub fn project(&self) -> Result<String, PluginError> {
        if let Some(project) = self.project_id.as_ref().filter(|p| !p.trim().is_empty()) {
            return Ok(project.clone());
        }
        match self.credentials()? {
            Credentials::ServiceAccount(ServiceAccountKey {
                project_id: Some(project),
                ..
            }) if !project.is_empty() => Ok(project),
            _ => Err(PluginError::Config(
                "`project_id` must be set (the key names no project_id)".into(),
            )),
        }
    }

    /// Where a key's JWT is exchanged: `token_uri`, else the key's, else Google's.
    pub fn token_uri(&self, key: &ServiceAccountKey) -> String {
        self.token_uri
            .clone()
            .or_else(|| key.token_uri.clone())
            .unwrap_or_else(|| DEFAULT_TOKEN_URI.into())
    }

    /// What errors name: the project and the endpoint.
    pub fn target(&self) -> String {
        format!(
            "BigQuery project {} at {}",
            self.project().unwrap_or_default(),
            self.api_base
        )
    }

    pub fn schema() -> serde_json::Value {
        serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "description": "A BigQuery project reached over the REST API v2 with a service-account key (RS256 JWT grant) or an access token.",
            "additionalProperties": false,
            "properties": {
                "credentials_json": {"type": "string", "writeOnly": true, "description": "the service-account key file's JSON"},
                "access_token": {"type": "string", "writeOnly": true, "description": "an OAuth access token, instead of credentials_json"},
                "project_id": {"type": "string", "description": "the project jobs run in; the key's project_id otherwise"},
                "location": {"type": "string", "description": "the jobs' region, e.g. US or EU"},
                "maximum_bytes_billed": {"type": "integer", "minimum": 1},
                "default_dataset": {"type": "string", "description": "DATASET or PROJECT.DATASET for unqualified names and discover"},
                "api_base": {"type": "string", "default": DEFAULT_API_BASE},
                "token_uri": {"type": "string", "default": DEFAULT_TOKEN_URI},
                "page_rows": {"type": "integer", "minimum": 1, "default": 10000},
                "request_timeout_ms": {"type": "integer", "minimum": 1, "default": 60000},
                "max_poll_ms": {"type": "integer", "minimum": 1, "default": 600000},
                "max_retries": {"type": "integer", "minimum": 0, "default": 6}
            }
        })
    }
}

fn parse_key(json: &str) -> Result<ServiceAccountKey, PluginError> {
    let key: ServiceAccountKey = serde_json::from_str(json).map_err(|e| {
        PluginError::Config(format!(
            "`credentials_json` is not a service-account key file: {e}"
        ))
    })?;
    if key.kind != "service_account" {
        return Err(PluginError::Config(format!(
            "`credentials_json` has type {:?}; a service-account key has \"service_account\"",
            key.kind
        )));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_exactly_one_credential_and_a_project() {
        assert!(Config::parse(r#"{"project_id":"p"}"#).is_err());
        assert!(Config::parse(r#"{"project_id":"p","access_token":"t"}"#).is_ok());
        assert!(matches!(
            Config::parse(r#"{"access_token":"t"}"#),
            Err(PluginError::Config(m)) if m.contains("project_id")
        ));
        let key = r#"{\"type\":\"service_account\",\"client_email\":\"a@b\",\"private_key\":\"k\",\"project_id\":\"kp\"}"#;
        let config = Config::parse(&format!(r#"{{"credentials_json":"{key}"}}"#)).unwrap();
        assert_eq!(config.project().unwrap(), "kp");
        let wrong =
            r#"{\"type\":\"authorized_user\",\"client_email\":\"a\",\"private_key\":\"k\"}"#;
        assert!(matches!(
            Config::parse(&format!(r#"{{"credentials_json":"{wrong}","project_id":"p"}}"#)),
            Err(PluginError::Config(m)) if m.contains("service_account")
        ));
    }
}
