//! The plugin's config document and its JSON Schema.

use serde::Deserialize;
use sluice_sdk::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// `{"path": "/data", "format": "csv", "delimiter": ",", "has_header": true,
///   "columns": {"ltv": "float"}}`
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The granted directory, as the guest sees it.
    #[serde(default = "default_path")]
    pub path: String,
    /// Forces one format for every file; by default the extension decides.
    #[serde(default)]
    pub format: Option<Format>,
    /// The CSV field delimiter: one ASCII character (`\t` for TSV).
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    /// Whether the first CSV record names the columns.
    #[serde(default = "default_has_header")]
    pub has_header: bool,
    /// Types for CSV columns, by column name; other columns are text.
    #[serde(default)]
    pub columns: BTreeMap<String, ColumnType>,
}

fn default_path() -> String {
    "/data".into()
}
fn default_delimiter() -> String {
    ",".into()
}
fn default_has_header() -> bool {
    true
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Jsonl,
    Parquet,
}

impl Format {
    /// The format a file name implies: `.csv`, `.jsonl`/`.ndjson`, `.parquet`.
    pub fn from_name(name: &str) -> Option<Format> {
        let ext = Path::new(name).extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            "parquet" => Some(Format::Parquet),
            _ => None,
        }
    }
}

/// A CSV column's type hint.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Text,
    Integer,
    Float,
    Decimal,
    Boolean,
    Timestamp,
    Date,
    Json,
}

impl ColumnType {
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::Integer => "integer",
            ColumnType::Float => "float",
            ColumnType::Decimal => "decimal",
            ColumnType::Boolean => "boolean",
            ColumnType::Timestamp => "timestamp",
            ColumnType::Date => "date",
            ColumnType::Json => "json",
        }
    }

    pub fn field_type(self) -> FieldType {
        match self {
            ColumnType::Text => FieldType::Text,
            ColumnType::Integer => FieldType::Integer,
            ColumnType::Float => FieldType::Float,
            ColumnType::Decimal => FieldType::Decimal,
            ColumnType::Boolean => FieldType::Boolean,
            ColumnType::Timestamp => FieldType::Timestamp,
            ColumnType::Date => FieldType::Date,
            ColumnType::Json => FieldType::Json,
        }
    }
}

impl Config {
    /// Parse and validate a config document.
    pub fn parse(text: &str) -> Result<Config, PluginError> {
        let config: Config = parse_config(text)?;
        if config.path.is_empty() {
            return Err(PluginError::Config(
                "`path` must name the granted directory, e.g. \"/data\"".into(),
            ));
        }
        config.delimiter_byte()?;
        Ok(config)
    }

    /// The delimiter as the single byte the CSV parser wants.
    pub fn delimiter_byte(&self) -> Result<u8, PluginError> {
        match self.delimiter.as_bytes() {
            [b] if b.is_ascii() && *b != b'\n' && *b != b'\r' && *b != b'"' => Ok(*b),
            _ => Err(PluginError::Config(format!(
                "`delimiter` must be one ASCII character other than a quote or a line break, got {:?}",
                self.delimiter
            ))),
        }
    }

    /// The format of the file `name`: the `format` override, else its extension.
    pub fn format_of(&self, name: &str) -> Result<Format, PluginError> {
        self.format.or_else(|| Format::from_name(name)).ok_or_else(|| {
            PluginError::Config(format!(
                "cannot tell the format of `{name}` from its extension (expected .csv, .jsonl, .ndjson or .parquet); set `format`"
            ))
        })
    }
}

/// The JSON Schema (draft 2020-12) of [`Config`].
pub fn schema() -> serde_json::Value {
    let types = [
        "text",
        "integer",
        "float",
        "decimal",
        "boolean",
        "timestamp",
        "date",
        "json",
    ];
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "path": {"type": "string", "minLength": 1, "default": "/data",
                     "description": "the granted directory, as the plugin sees it"},
            "format": {"enum": ["csv", "jsonl", "parquet"],
                       "description": "read every file as this format; by default the extension decides (.csv, .jsonl/.ndjson, .parquet)"},
            "delimiter": {"type": "string", "minLength": 1, "maxLength": 1, "default": ",",
                          "description": "CSV field delimiter"},
            "has_header": {"type": "boolean", "default": true,
                           "description": "whether the first CSV record names the columns (else column_1, column_2, ...)"},
            "columns": {"type": "object", "additionalProperties": {"enum": types},
                        "description": "CSV column types by column name; unlisted columns are text"}
        }
    })
}
