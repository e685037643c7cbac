//! Streaming a result: chunk 0 from the statement's answer, then one chunk
//! fetched at a time (by `next_chunk_internal_link`) as batches are asked for.

use crate::client::{Client, ExternalLink, RawRow, ResultData};
use crate::types::{decode_row, Decode};
use sluice_sdk::prelude::*;

pub struct DatabricksReader {
    client: Client,
    statement_id: String,
    names: Vec<String>,
    decoders: Vec<Decode>,
    rows: std::vec::IntoIter<RawRow>,
    next_chunk: Option<String>,
}

impl DatabricksReader {
    pub fn open(client: Client, sql: &str) -> Result<Self, PluginError> {
        let statement = client.execute(sql)?;
        let columns = statement
            .manifest
            .map(|m| m.schema.columns)
            .unwrap_or_default();
        let mut reader = DatabricksReader {
            names: columns.iter().map(|c| c.name.clone()).collect(),
            decoders: columns.iter().map(Decode::of).collect(),
            rows: Vec::new().into_iter(),
            next_chunk: None,
            statement_id: statement.statement_id,
            client,
        };
        if let Some(result) = statement.result {
            reader.load(result)?;
        }
        Ok(reader)
    }

    /// What errors name.
    pub fn target(&self) -> String {
        format!(
            "{} (statement {})",
            self.client.config().target(),
            self.statement_id
        )
    }

    /// Takes a chunk's rows, downloading them when it is a link.
    fn load(&mut self, result: ResultData) -> Result<(), PluginError> {
        if let Some(links) = result.external_links {
            let mut rows = Vec::new();
            let mut next = result.next_chunk_internal_link;
            for link in links {
                next = link.next_chunk_internal_link.clone().or(next);
                rows.extend(self.download(link)?);
            }
            self.rows = rows.into_iter();
            self.next_chunk = next;
        } else {
            self.rows = result.data_array.unwrap_or_default().into_iter();
            self.next_chunk = result.next_chunk_internal_link;
        }
        Ok(())
    }

    /// An EXTERNAL_LINKS file; a link that expired (403) is asked for again once.
    fn download(&self, link: ExternalLink) -> Result<Vec<RawRow>, PluginError> {
        if let Some(rows) = self.client.external_rows(&link)? {
            return Ok(rows);
        }
        let path = format!(
            "/api/2.0/sql/statements/{}/result/chunks/{}",
            self.statement_id, link.chunk_index
        );
        let fresh = self
            .client
            .chunk(&path)?
            .external_links
            .and_then(|mut links| links.pop())
            .ok_or_else(|| {
                PluginError::Permanent(format!(
                    "{}: chunk {} has no external link",
                    self.target(),
                    link.chunk_index
                ))
            })?;
        self.client.external_rows(&fresh)?.ok_or_else(|| {
            PluginError::Permanent(format!(
                "{}: the link to chunk {} was refused (HTTP 403) twice, even fresh: check that the storage host is reachable and the clock is right",
                self.target(),
                link.chunk_index
            ))
        })
    }
}

impl Reader for DatabricksReader {
    fn next(&mut self, max_rows: u32) -> Result<Option<Batch>, PluginError> {
        let mut batch = Batch::new(self.names.clone());
        while batch.rows.len() < max_rows as usize {
            match self.rows.next() {
                Some(raw) => {
                    batch
                        .rows
                        .push(decode_row(&self.decoders, &self.names, raw).map_err(
                            |e| match e {
                                PluginError::Permanent(m) => {
                                    PluginError::Permanent(format!("{}: {m}", self.target()))
                                }
                                other => other,
                            },
                        )?)
                }
                None => match self.next_chunk.take() {
                    Some(link) => {
                        let result = self.client.chunk(&link)?;
                        self.load(result)?;
                    }
                    None => break,
                },
            }
        }
        Ok((!batch.rows.is_empty()).then_some(batch))
    }
}

/// `table`, `schema.table` or `catalog.schema.table`, each part quoted with
/// backticks (write a part containing a dot in backticks).
pub fn quote_object(name: &str) -> Result<String, PluginError> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' if quoted && chars.peek() == Some(&'`') => {
                chars.next();
                current.push('`');
            }
            '`' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }
    parts.push(current);
    if quoted || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(PluginError::Config(format!(
            "object {name:?} is not TABLE, SCHEMA.TABLE or CATALOG.SCHEMA.TABLE"
        )));
    }
    Ok(parts
        .iter()
        .map(|p| format!("`{}`", p.replace('`', "``")))
        .collect::<Vec<_>>()
        .join("."))
}

/// Tables and columns of the configured catalog, from its information_schema.
pub fn discover(client: Client) -> Result<Vec<ObjectInfo>, PluginError> {
    let Some(catalog) = client.config().catalog.clone() else {
        return Err(PluginError::Config(
            "`catalog` must be set to discover its tables".into(),
        ));
    };
    let sql = format!(
        "SELECT table_schema, table_name, column_name, data_type, is_nullable \
         FROM {}.information_schema.columns WHERE table_schema <> 'information_schema' \
         ORDER BY table_schema, table_name, ordinal_position",
        quote_object(&catalog)?
    );
    let mut reader = DatabricksReader::open(client, &sql)?;
    let mut objects: Vec<ObjectInfo> = Vec::new();
    while let Some(batch) = reader.next(1000)? {
        for row in batch.rows {
            let text = |i: usize| match row.get(i) {
                Some(Value::Text(s)) => s.clone(),
                _ => String::new(),
            };
            let name = format!("{}.{}", text(0), text(1));
            let field = Field {
                name: text(2),
                type_: Decode::field_type(&text(3)),
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
        }
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_quoted_part_by_part() {
        assert_eq!(
            quote_object("main.sales.orders").unwrap(),
            "`main`.`sales`.`orders`"
        );
        assert_eq!(quote_object("`a.b`.c").unwrap(), "`a.b`.`c`");
        assert!(quote_object("a..b").is_err());
        assert!(quote_object("a.b.c.d").is_err());
    }
}
