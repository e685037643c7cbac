//! Config documents: plugins receive their config as JSON text.

use crate::PluginError;
use serde::de::DeserializeOwned;

/// Parse a plugin's JSON config into `T`, turning mistakes into a
/// `PluginError::Config` that names the offending key and position.
pub fn parse_config<T: DeserializeOwned>(config: &str) -> Result<T, PluginError> {
    let text = if config.trim().is_empty() {
        "{}"
    } else {
        config
    };
    serde_json::from_str(text).map_err(|e| PluginError::Config(format!("invalid config: {e}")))
}
