//! The tables of the configured database, from information_schema: their
//! writable columns with the source's type mapping, and which columns can
//! identify a row.

use crate::literal::quote;
use mysql::conn::Connection;
use mysql::discover::{json_columns, JsonColumns};
use mysql::reader::{format_object_name, parse_object_name, quote_ident};
use mysql::types::kind_of_declared;
use sluice_sdk::{Field, ObjectInfo, PluginError, WriteMode};
use std::collections::{HashMap, HashSet};

/// Columns of base tables, without generated ones (nothing may be written
/// to them). `{filter}` narrows it to one table.
const COLUMNS_SQL: &str = "\
SELECT c.TABLE_SCHEMA, c.TABLE_NAME, c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, c.IS_NULLABLE,
       c.COLUMN_DEFAULT IS NULL AND c.EXTRA NOT LIKE '%auto_increment%',
       c.CHARACTER_SET_NAME, c.COLLATION_NAME
FROM information_schema.COLUMNS c
JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME
WHERE t.TABLE_TYPE = 'BASE TABLE'
  AND c.EXTRA NOT LIKE '%VIRTUAL GENERATED%' AND c.EXTRA NOT LIKE '%STORED GENERATED%'
  AND {filter}
ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION";

/// Unique indexes, column by column: a column alone in one (not a
/// prefix) identifies rows.
const UNIQUE_SQL: &str = "\
SELECT TABLE_NAME, INDEX_NAME, COLUMN_NAME, SUB_PART IS NULL
FROM information_schema.STATISTICS
WHERE NON_UNIQUE = 0 AND {filter}
ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX";

/// A column of a table.
#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    /// For a text column, how the server compares it: an identifier from
    /// the batch is compared in the column's own character set and
    /// collation, as its unique index does.
    pub collation: Option<(String, String)>,
    pub field: Field,
}

/// A table.
#[derive(Clone, Debug)]
pub struct Table {
    /// `table` (or `db.table` when asked for so), as `discover` reports it.
    pub name: String,
    /// `` `db`.`table` `` for SQL.
    pub sql: String,
    pub columns: Vec<Column>,
    pub modes: Vec<WriteMode>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn object_info(&self) -> ObjectInfo {
        ObjectInfo {
            name: self.name.clone(),
            fields: self.columns.iter().map(|c| c.field.clone()).collect(),
            modes: self.modes.clone(),
        }
    }
}

/// Upsert, update and delete match rows on an identifier column; insert
/// and append need none. (Privileges are the server's to check: a write
/// the account may not make fails with its message.)
fn modes(has_identifier: bool) -> Vec<WriteMode> {
    if has_identifier {
        vec![
            WriteMode::Upsert,
            WriteMode::Update,
            WriteMode::Insert,
            WriteMode::Append,
            WriteMode::Delete,
        ]
    } else {
        vec![WriteMode::Insert, WriteMode::Append]
    }
}

/// The tables of the configured database, or only the one `object` names
/// (`table`, or `db.table` for another database).
pub fn tables(conn: &mut Connection, object: Option<&str>) -> Result<Vec<Table>, PluginError> {
    let (schema, table) = match object {
        Some(name) => {
            let mut parts = parse_object_name(name).map_err(PluginError::Permanent)?;
            let table = parts.pop().unwrap_or_default();
            (parts.pop(), Some(table))
        }
        None => (None, None),
    };
    let filter = |prefix: &str| {
        let schema = schema.as_deref().map_or("DATABASE()".to_owned(), quote);
        let mut sql = format!("{prefix}TABLE_SCHEMA = {schema}");
        if let Some(table) = &table {
            sql.push_str(&format!(" AND {prefix}TABLE_NAME = {}", quote(table)));
        }
        sql
    };
    let keys = identifiers(conn, &filter(""))?;
    let json = if conn.is_mariadb() {
        json_columns(conn)?
    } else {
        JsonColumns::new()
    };
    let rows = conn.query_rows(&COLUMNS_SQL.replace("{filter}", &filter("c.")))?;
    let mut tables: Vec<Table> = Vec::new();
    for row in rows {
        let row = CatalogRow::parse(row)?;
        let is_json = json.contains(&(row.schema.clone(), row.table.clone(), row.column.clone()));
        let column = Column {
            field: Field {
                name: row.column.clone(),
                type_: kind_of_declared(&row.data_type, &row.column_type, is_json).field_type(),
                nullable: row.nullable,
                required: !row.nullable && row.no_default,
                identifier: keys.contains(&(row.table.clone(), row.column.clone())),
            },
            name: row.column,
            collation: row.collation,
        };
        match tables.last_mut() {
            Some(last) if last.sql == table_sql(&row.schema, &row.table) => {
                last.columns.push(column)
            }
            _ => tables.push(Table {
                name: match (&schema, object) {
                    (Some(_), Some(name)) => name.to_owned(),
                    _ => format_object_name(&row.table),
                },
                sql: table_sql(&row.schema, &row.table),
                columns: vec![column],
                modes: Vec::new(),
            }),
        }
    }
    for table in &mut tables {
        table.modes = modes(table.columns.iter().any(|c| c.field.identifier));
    }
    Ok(tables)
}

fn table_sql(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

/// (table, column) of every column that alone is a unique index.
fn identifiers(
    conn: &mut Connection,
    filter: &str,
) -> Result<HashSet<(String, String)>, PluginError> {
    let mut indexes: HashMap<(String, String), Vec<(String, bool)>> = HashMap::new();
    for row in conn.query_rows(&UNIQUE_SQL.replace("{filter}", filter))? {
        let [Some(table), Some(index), Some(column), whole] = row.as_slice() else {
            return Err(PluginError::Permanent(format!(
                "unexpected information_schema row {row:?} while listing unique indexes"
            )));
        };
        indexes
            .entry((table.clone(), index.clone()))
            .or_default()
            .push((column.clone(), whole.as_deref() == Some("1")));
    }
    Ok(indexes
        .into_iter()
        .filter_map(|((table, _), columns)| match columns.as_slice() {
            [(column, true)] => Some((table, column.clone())),
            _ => None,
        })
        .collect())
}

struct CatalogRow {
    schema: String,
    table: String,
    column: String,
    data_type: String,
    column_type: String,
    nullable: bool,
    no_default: bool,
    collation: Option<(String, String)>,
}

impl CatalogRow {
    fn parse(row: Vec<Option<String>>) -> Result<CatalogRow, PluginError> {
        let [Some(schema), Some(table), Some(column), Some(data_type), Some(column_type), Some(nullable), no_default, charset, collation] =
            row.as_slice()
        else {
            return Err(PluginError::Permanent(format!(
                "unexpected information_schema row {row:?} while listing columns"
            )));
        };
        Ok(CatalogRow {
            schema: schema.clone(),
            table: table.clone(),
            column: column.clone(),
            data_type: data_type.to_ascii_lowercase(),
            column_type: column_type.to_ascii_lowercase(),
            nullable: nullable == "YES",
            no_default: no_default.as_deref() == Some("1"),
            collation: charset.clone().zip(collation.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_modes_need_an_identifier() {
        assert_eq!(modes(false), [WriteMode::Insert, WriteMode::Append]);
        assert_eq!(modes(true).len(), 5);
    }
}
