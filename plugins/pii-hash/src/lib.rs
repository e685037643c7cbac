//! `pii-hash`: replaces chosen fields with the hex SHA-256 of their value, so
//! audiences can be matched (ad platforms, CRMs) without sending raw PII.
//!
//! Emails are normalised before hashing (trimmed, lowercased), as ad
//! platforms require; other text is trimmed. Nulls stay null. An optional
//! salt is prepended to every value.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use sluice_sdk::prelude::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Columns to hash.
    fields: Vec<String>,
    /// Columns holding emails; defaults to every hashed column whose name
    /// contains "email".
    #[serde(default)]
    email_fields: Option<Vec<String>>,
    /// Prepended to each value before hashing.
    #[serde(default)]
    salt: String,
}

pub struct PiiHash {
    config: Config,
}

impl PiiHash {
    fn is_email_field(&self, name: &str) -> bool {
        match &self.config.email_fields {
            Some(list) => list.iter().any(|f| f == name),
            None => name.to_ascii_lowercase().contains("email"),
        }
    }

    fn hash(&self, text: &str, email: bool) -> String {
        let normalised = if email {
            text.trim().to_lowercase()
        } else {
            text.trim().to_string()
        };
        let mut hasher = Sha256::new();
        hasher.update(self.config.salt.as_bytes());
        hasher.update(normalised.as_bytes());
        to_hex(&hasher.finalize())
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Transform for PiiHash {
    fn spec() -> PluginSpec {
        PluginSpec::new(
            "pii-hash",
            env!("CARGO_PKG_VERSION"),
            "Replaces chosen fields with their SHA-256 (hex); emails are trimmed and lowercased first",
        )
        .config_schema(serde_json::json!({
            "type": "object",
            "required": ["fields"],
            "additionalProperties": false,
            "properties": {
                "fields": {"type": "array", "items": {"type": "string"}, "description": "columns to hash"},
                "email_fields": {"type": "array", "items": {"type": "string"}, "description": "columns normalised as emails (default: names containing 'email')"},
                "salt": {"type": "string", "description": "prepended to every value before hashing"}
            }
        }))
    }

    fn open(config: &str) -> Result<Self, PluginError> {
        let config: Config = parse_config(config)?;
        if config.fields.is_empty() {
            return Err(PluginError::Config(
                "`fields` must name at least one column".into(),
            ));
        }
        Ok(PiiHash { config })
    }

    fn transform(&mut self, mut batch: Batch) -> Result<Transformed, PluginError> {
        let mut targets = Vec::with_capacity(self.config.fields.len());
        for name in &self.config.fields {
            let index = batch.column(name).ok_or_else(|| {
                PluginError::Config(format!(
                    "field `{name}` is not in the batch (columns: {})",
                    batch.columns.join(", ")
                ))
            })?;
            targets.push((index, self.is_email_field(name)));
        }
        let mut text = String::new();
        for row in &mut batch.rows {
            for &(index, email) in &targets {
                let value = &mut row[index];
                if value.is_null() {
                    continue;
                }
                text.clear();
                value.write_text(&mut text);
                *value = Value::Text(self.hash(&text, email));
            }
        }
        Ok(Transformed::all(batch))
    }
}

sluice_sdk::export_transform!(PiiHash);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_normalised_emails_and_keeps_nulls() {
        let mut t = PiiHash::open(r#"{"fields":["email","phone"]}"#).unwrap();
        let batch = Batch {
            columns: vec!["id".into(), "email".into(), "phone".into()],
            rows: vec![
                vec![Value::Integer(1), " Foo@Example.COM ".into(), Value::Null],
                vec![Value::Integer(2), "foo@example.com".into(), "+1 555".into()],
            ],
        };
        let out = t.transform(batch).unwrap().batch;
        assert_eq!(out.rows[0][1], out.rows[1][1]);
        // sha256("foo@example.com")
        assert_eq!(
            out.rows[0][1].as_str().unwrap(),
            "321ba197033e81286fedb719d60d4ed5cecaed170733cb4a92013811afc0e3b6"
        );
        assert_eq!(out.rows[0][2], Value::Null);
        assert_eq!(out.rows[0][0], Value::Integer(1));
    }

    #[test]
    fn unknown_field_is_a_config_error() {
        let mut t = PiiHash::open(r#"{"fields":["mail"]}"#).unwrap();
        let err = t.transform(Batch::new(vec!["email".into()])).unwrap_err();
        assert!(matches!(err, PluginError::Config(m) if m.contains("`mail`")));
    }
}
