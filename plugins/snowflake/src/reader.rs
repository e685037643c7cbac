//! Streaming a result: partition 0 from the submit answer, then one partition
//! fetched at a time as batches are asked for.

use crate::client::{Client, RawRow};
use crate::types::{decode_row, Decode};
use sluice_sdk::prelude::*;

pub struct SnowflakeReader {
    client: Client,
    handle: String,
    names: Vec<String>,
    decoders: Vec<Decode>,
    rows: std::vec::IntoIter<RawRow>,
    next_partition: usize,
    partitions: usize,
}

impl SnowflakeReader {
    pub fn open(client: Client, sql: &str) -> Result<Self, PluginError> {
        let result = client.execute(sql, None)?;
        let meta = result.result_set_meta_data;
        Ok(SnowflakeReader {
            names: meta.row_type.iter().map(|c| c.name.clone()).collect(),
            decoders: meta.row_type.iter().map(Decode::of).collect(),
            rows: result.data.into_iter(),
            next_partition: 1,
            partitions: meta.partition_info.len().max(1),
            handle: result.statement_handle,
            client,
        })
    }
}

impl Reader for SnowflakeReader {
    fn next(&mut self, max_rows: u32) -> Result<Option<Batch>, PluginError> {
        let mut batch = Batch::new(self.names.clone());
        while batch.rows.len() < max_rows as usize {
            match self.rows.next() {
                Some(raw) => {
                    batch
                        .rows
                        .push(decode_row(&self.decoders, &self.names, raw).map_err(
                            |e| match e {
                                PluginError::Permanent(m) => PluginError::Permanent(format!(
                                    "{} (statement {}): {m}",
                                    self.client.config().target(),
                                    self.handle
                                )),
                                other => other,
                            },
                        )?)
                }
                None if self.next_partition < self.partitions => {
                    self.rows = self
                        .client
                        .partition(&self.handle, self.next_partition)?
                        .into_iter();
                    self.next_partition += 1;
                }
                None => break,
            }
        }
        Ok((!batch.rows.is_empty()).then_some(batch))
    }
}

/// `TABLE`, `SCHEMA.TABLE` or `DB.SCHEMA.TABLE`, each part an exact name (quoted
/// in the SQL; write a part containing a dot in double quotes).
pub fn quote_object(name: &str) -> Result<String, PluginError> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                current.push('"');
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }
    parts.push(current);
    if quoted || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(PluginError::Config(format!(
            "object {name:?} is not TABLE, SCHEMA.TABLE or DATABASE.SCHEMA.TABLE"
        )));
    }
    Ok(parts
        .iter()
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join("."))
}

/// Tables and columns of the configured database, from INFORMATION_SCHEMA.
pub fn discover(client: Client) -> Result<Vec<ObjectInfo>, PluginError> {
    let Some(database) = client.config().database.clone() else {
        return Err(PluginError::Config(
            "`database` must be set to discover its tables".into(),
        ));
    };
    let sql = format!(
        "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, DATA_TYPE, IS_NULLABLE, NUMERIC_SCALE \
         FROM {}.INFORMATION_SCHEMA.COLUMNS WHERE TABLE_CATALOG = ? AND TABLE_SCHEMA <> 'INFORMATION_SCHEMA' \
         ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION",
        quote_object(&database)?
    );
    let bindings = serde_json::json!({"1": {"type": "TEXT", "value": database}});
    let result = client.execute(&sql, Some(bindings))?;
    let partitions = result.result_set_meta_data.partition_info.len().max(1);
    let mut objects: Vec<ObjectInfo> = Vec::new();
    let mut add = |row: RawRow| {
        let text = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let name = format!("{}.{}", text(0), text(1));
        let field = Field {
            name: text(2),
            type_: Decode::field_type(&text(3), text(5).parse().ok()),
            nullable: text(4) != "NO",
            required: false,
            identifier: false,
        };
        match objects.last_mut() {
            Some(object) if object.name == name => object.fields.push(field),
            _ => objects.push(ObjectInfo {
                name,
                fields: vec![field],
                modes: Vec::new(),
            }),
        }
    };
    result.data.into_iter().for_each(&mut add);
    for n in 1..partitions {
        client
            .partition(&result.statement_handle, n)?
            .into_iter()
            .for_each(&mut add);
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_quoted_part_by_part() {
        assert_eq!(
            quote_object("DEMO.NEXLA.CUSTOMER").unwrap(),
            r#""DEMO"."NEXLA"."CUSTOMER""#
        );
        assert_eq!(quote_object(r#""a.b".c"#).unwrap(), r#""a.b"."c""#);
        assert!(quote_object("a..b").is_err());
        assert!(quote_object("a.b.c.d").is_err());
    }
}
