//! Listing the tables and views of the configured database with their
//! columns and primary keys, from information_schema.

use crate::conn::Connection;
use crate::reader::format_object_name;
use crate::types::kind_of_declared;
use sluice_sdk::{Field, ObjectInfo, PluginError};
use std::collections::HashSet;

/// One row per column of the connection's database, ordered by table and
/// position. information_schema shows only what the user may access.
const COLUMNS_SQL: &str = "\
SELECT c.TABLE_NAME, c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, c.IS_NULLABLE, c.COLUMN_KEY
FROM information_schema.COLUMNS c
WHERE c.TABLE_SCHEMA = DATABASE()
ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION";

/// MariaDB declares a `JSON` column as LONGTEXT with a `json_valid(col)`
/// check constraint; this finds those of the connection's database (only
/// it: information_schema opens every table it lists).
const JSON_CHECKS_SQL: &str = "\
SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CHECK_CLAUSE
FROM information_schema.CHECK_CONSTRAINTS
WHERE CONSTRAINT_SCHEMA = DATABASE() AND CHECK_CLAUSE LIKE 'json_valid(%'";

/// (database, table, column) of every MariaDB column declared JSON.
pub type JsonColumns = HashSet<(String, String, String)>;

pub fn json_columns(conn: &mut Connection) -> Result<JsonColumns, PluginError> {
    let mut columns = JsonColumns::new();
    for row in conn.query_rows(JSON_CHECKS_SQL)? {
        if let [Some(schema), Some(table), Some(clause)] = row.as_slice() {
            if let Some(column) = json_check_column(clause) {
                columns.insert((schema.clone(), table.clone(), column));
            }
        }
    }
    Ok(columns)
}

/// The column of a check clause that is exactly ``json_valid(`col`)``.
fn json_check_column(clause: &str) -> Option<String> {
    let quoted = clause.strip_prefix("json_valid(`")?.strip_suffix("`)")?;
    // Inside backticks a backtick is doubled; a lone one means the clause
    // is more than one identifier.
    let mut name = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        if c == '`' && chars.next() != Some('`') {
            return None;
        }
        name.push(c);
    }
    Some(name)
}

pub fn discover(conn: &mut Connection) -> Result<Vec<ObjectInfo>, PluginError> {
    let json = if conn.is_mariadb() {
        json_columns(conn)?
    } else {
        JsonColumns::new()
    };
    let database = conn
        .query_rows("SELECT DATABASE()")?
        .into_iter()
        .next()
        .and_then(|row| row.into_iter().next().flatten())
        .unwrap_or_default();
    let mut objects: Vec<ObjectInfo> = Vec::new();
    for row in conn.query_rows(COLUMNS_SQL)? {
        let [Some(table), Some(name), Some(data_type), Some(column_type), Some(nullable), key] =
            row.as_slice()
        else {
            return Err(PluginError::Permanent(format!(
                "unexpected information_schema row {row:?} while discovering"
            )));
        };
        let is_json = json.contains(&(database.clone(), table.clone(), name.clone()));
        let kind = kind_of_declared(data_type, column_type, is_json);
        let field = Field {
            name: name.clone(),
            type_: kind.field_type(),
            nullable: nullable == "YES",
            // A source never requires anything of a write.
            required: false,
            identifier: key.as_deref() == Some("PRI"),
        };
        let object = format_object_name(table);
        match objects.last_mut() {
            Some(last) if last.name == object => last.fields.push(field),
            _ => objects.push(ObjectInfo {
                name: object,
                fields: vec![field],
                modes: Vec::new(),
            }),
        }
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_json_valid_checks_exactly() {
        assert_eq!(
            json_check_column("json_valid(`doc`)").as_deref(),
            Some("doc")
        );
        assert_eq!(
            json_check_column("json_valid(`a``b`)").as_deref(),
            Some("a`b")
        );
        assert_eq!(json_check_column("json_valid(`a`) and `b` > 0"), None);
        assert_eq!(json_check_column("json_valid(`a` + `b`)"), None);
    }
}
