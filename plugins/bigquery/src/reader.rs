//! Streaming a result: the first page from jobs.query, then one page at a time
//! (by `pageToken`) as batches are asked for, so memory holds one page.

use crate::client::{Client, JobReference, QueryPage};
use crate::types::{decode_row, Column, Kind};
use serde_json::Value as Json;
use sluice_sdk::prelude::*;

pub struct BigQueryReader {
    client: Client,
    job: JobReference,
    names: Vec<String>,
    columns: Vec<Column>,
    rows: std::vec::IntoIter<Json>,
    page_token: Option<String>,
}

impl BigQueryReader {
    pub fn open(client: Client, sql: &str) -> Result<Self, PluginError> {
        let page = client.query(sql)?;
        let fields = page
            .schema
            .as_ref()
            .map(|s| s.fields.clone())
            .unwrap_or_default();
        Ok(BigQueryReader {
            names: fields.iter().map(|f| f.name.clone()).collect(),
            columns: fields.iter().map(Column::of).collect(),
            job: page.job_reference.clone().unwrap_or_default(),
            page_token: page.page_token.clone(),
            rows: page.rows.into_iter(),
            client,
        })
    }

    fn next_page(&mut self, token: &str) -> Result<(), PluginError> {
        let QueryPage {
            rows, page_token, ..
        } = self.client.results(&self.job, Some(token))?;
        self.rows = rows.into_iter();
        self.page_token = page_token;
        Ok(())
    }
}

impl Reader for BigQueryReader {
    fn next(&mut self, max_rows: u32) -> Result<Option<Batch>, PluginError> {
        let mut batch = Batch::new(self.names.clone());
        while batch.rows.len() < max_rows as usize {
            match self.rows.next() {
                Some(row) => {
                    batch
                        .rows
                        .push(decode_row(&self.columns, &row).map_err(|e| match e {
                            PluginError::Permanent(m) => PluginError::Permanent(format!(
                                "{} (job {}): {m}",
                                self.client.config().target(),
                                self.job.job_id
                            )),
                            other => other,
                        })?)
                }
                None => match self.page_token.take() {
                    Some(token) => self.next_page(&token)?,
                    None => break,
                },
            }
        }
        Ok((!batch.rows.is_empty()).then_some(batch))
    }
}

/// The SQL a read runs: the query, or every column of the object.
pub fn sql_of(request: ReadRequest) -> Result<String, PluginError> {
    Ok(match request {
        ReadRequest::Query(sql) => sql,
        ReadRequest::Object(name) => format!("SELECT * FROM {}", quote_object(&name)?),
    })
}

/// `TABLE`, `DATASET.TABLE` or `PROJECT.DATASET.TABLE` as a backquoted path
/// (BigQuery names hold no backquotes).
pub fn quote_object(name: &str) -> Result<String, PluginError> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() > 3 || parts.iter().any(|p| p.is_empty() || p.contains('`')) {
        return Err(PluginError::Config(format!(
            "object {name:?} is not TABLE, DATASET.TABLE or PROJECT.DATASET.TABLE"
        )));
    }
    Ok(format!("`{name}`"))
}

/// Tables and columns of `default_dataset`, from its INFORMATION_SCHEMA.COLUMNS.
pub fn discover(client: Client) -> Result<Vec<ObjectInfo>, PluginError> {
    let Some(dataset) = client.config().default_dataset.clone() else {
        return Err(PluginError::Config(
            "`default_dataset` must be set to discover its tables".into(),
        ));
    };
    let sql = format!(
        "SELECT table_name, column_name, data_type, is_nullable FROM {}.INFORMATION_SCHEMA.COLUMNS \
         ORDER BY table_name, ordinal_position",
        quote_object(&dataset)?
    );
    let mut reader = BigQueryReader::open(client, &sql)?;
    let mut objects: Vec<ObjectInfo> = Vec::new();
    while let Some(batch) = reader.next(10_000)? {
        for row in batch.rows {
            let text = |i: usize| match row.get(i) {
                Some(Value::Text(t)) => t.clone(),
                _ => String::new(),
            };
            let name = format!("{dataset}.{}", text(0));
            let data_type = text(2);
            let field = Field {
                name: text(1),
                type_: Kind::of(data_type.split('<').next().unwrap_or_default())
                    .field_type(data_type.starts_with("ARRAY")),
                nullable: text(3) != "NO",
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
    fn object_names_are_backquoted_paths() {
        assert_eq!(quote_object("shop.orders").unwrap(), "`shop.orders`");
        assert!(quote_object("a..b").is_err());
        assert!(quote_object("a.b.c.d").is_err());
        assert!(quote_object("a`b").is_err());
    }
}
