//! The manifest's column types and the JSON_ARRAY encoding of each value.

use base64::Engine;
use serde_json::{json, Value as Json};

use super::sql::TYPE_COMMENT;
use crate::pg::ResultColumn;

/// One manifest column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub type_name: &'static str,
    pub type_text: String,
    pub precision: Option<u32>,
    pub scale: Option<u32>,
}

impl Column {
    /// The Databricks type of a PostgreSQL result column (see `sql` for the
    /// DDL mapping this reverses).
    pub fn of(column: &ResultColumn) -> Column {
        let declared = column
            .comment
            .as_deref()
            .and_then(|c| c.strip_prefix(TYPE_COMMENT))
            .map(str::to_owned);
        let simple = |type_name: &'static str, text: &str| (type_name, text.to_owned(), None, None);
        let (type_name, type_text, precision, scale) = match column.type_name.as_str() {
            "db_byte" => simple("BYTE", "TINYINT"),
            "int2" => simple("SHORT", "SMALLINT"),
            "int4" => simple("INT", "INT"),
            "int8" => simple("LONG", "BIGINT"),
            "float4" => simple("FLOAT", "FLOAT"),
            "float8" => simple("DOUBLE", "DOUBLE"),
            "numeric" => {
                // A computed NUMERIC has no declared precision: Databricks' widest.
                let (p, s) = if column.typmod >= 4 {
                    let t = (column.typmod - 4) as u32;
                    ((t >> 16) & 0xffff, t & 0xffff)
                } else {
                    (38, 18)
                };
                ("DECIMAL", format!("DECIMAL({p},{s})"), Some(p), Some(s))
            }
            "bool" => simple("BOOLEAN", "BOOLEAN"),
            "bytea" => simple("BINARY", "BINARY"),
            "date" => simple("DATE", "DATE"),
            "timestamptz" => simple("TIMESTAMP", "TIMESTAMP"),
            "timestamp" => simple("TIMESTAMP_NTZ", "TIMESTAMP_NTZ"),
            "db_array" => (
                "ARRAY",
                declared.unwrap_or_else(|| "ARRAY<STRING>".into()),
                None,
                None,
            ),
            "db_map" => (
                "MAP",
                declared.unwrap_or_else(|| "MAP<STRING,STRING>".into()),
                None,
                None,
            ),
            "db_struct" => (
                "STRUCT",
                declared.unwrap_or_else(|| "STRUCT<>".into()),
                None,
                None,
            ),
            "interval" => (
                "INTERVAL",
                declared.unwrap_or_else(|| "INTERVAL DAY TO SECOND".into()),
                None,
                None,
            ),
            "void" | "unknown" => simple("NULL", "VOID"),
            _ => simple("STRING", "STRING"),
        };
        Column {
            name: column.name.clone(),
            type_name,
            type_text,
            precision,
            scale,
        }
    }

    /// The manifest's `schema.columns[]` entry.
    pub fn manifest(&self, position: usize) -> Json {
        let mut column = json!({
            "name": self.name,
            "position": position,
            "type_name": self.type_name,
            "type_text": self.type_text,
        });
        if let (Some(p), Some(s)) = (self.precision, self.scale) {
            column["type_precision"] = json!(p);
            column["type_scale"] = json!(s);
        }
        column
    }

    /// A PostgreSQL text value as JSON_ARRAY sends it (the session runs with
    /// TimeZone UTC, DateStyle ISO, IntervalStyle iso_8601, bytea hex).
    pub fn encode(&self, text: &str) -> String {
        match self.type_name {
            "BOOLEAN" => match text {
                "t" => "true".into(),
                "f" => "false".into(),
                other => other.into(),
            },
            "TIMESTAMP" => timestamp(text)
                .map(|t| format!("{t}Z"))
                .unwrap_or_else(|| text.to_owned()),
            "TIMESTAMP_NTZ" => timestamp(text).unwrap_or_else(|| text.to_owned()),
            "BINARY" => text
                .strip_prefix("\\x")
                .and_then(hex)
                .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes))
                .unwrap_or_else(|| text.to_owned()),
            _ => text.to_owned(),
        }
    }
}

/// `2024-01-02 03:04:05.123456[+00]` as `2024-01-02T03:04:05.123456`; `None`
/// for what has no ISO form (BC dates, infinity), which is sent as is.
fn timestamp(text: &str) -> Option<String> {
    if text.ends_with(" BC") || text.contains("infinity") {
        return None;
    }
    let without_zone = text.strip_suffix("+00").unwrap_or(text);
    let (date, time) = without_zone.split_once(' ')?;
    Some(format!("{date}T{time}"))
}

fn hex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(type_name: &str, typmod: i32, comment: Option<&str>) -> Column {
        Column::of(&ResultColumn {
            name: "c".into(),
            type_name: type_name.into(),
            typmod,
            nullable: true,
            source: None,
            comment: comment.map(str::to_owned),
        })
    }

    #[test]
    fn types_and_values_are_encoded_as_documented() {
        let decimal = column("numeric", ((38 << 16) | 10) + 4, None);
        assert_eq!(decimal.type_text, "DECIMAL(38,10)");
        assert_eq!(decimal.manifest(0)["type_scale"], 10);
        let ts = column("timestamptz", -1, None);
        assert_eq!(
            ts.encode("2024-01-02 03:04:05.5+00"),
            "2024-01-02T03:04:05.5Z"
        );
        let ntz = column("timestamp", -1, None);
        assert_eq!(ntz.encode("2024-01-02 03:04:05"), "2024-01-02T03:04:05");
        assert_eq!(column("bytea", -1, None).encode("\\x0aff"), "Cv8=");
        assert_eq!(column("bool", -1, None).encode("t"), "true");
        let array = column("db_array", -1, Some("databricks_type:ARRAY<INT>"));
        assert_eq!(
            (array.type_name, array.type_text.as_str()),
            ("ARRAY", "ARRAY<INT>")
        );
    }
}
