//! The tables a user may write, from pg_catalog: their columns with the
//! source's type mapping, which columns can identify a row, which writes
//! the user's privileges allow.

use postgres::conn::Connection;
use postgres::reader::{format_object_name, parse_object_name, quote_ident};
use postgres::types::{self, Oid};
use sluice_sdk::{Field, ObjectInfo, PluginError, WriteMode};
use std::collections::HashMap;

/// One row per writable column of every table the user may insert into,
/// update or delete from, or of the one table `$1` names (a `regclass`
/// text: `"schema"."table"`, or `"table"` through `search_path`).
/// Generated columns are left out: nothing may be written to them. A
/// column identifies rows when it alone is the key of a unique index
/// without predicate or expression: what `ON CONFLICT (column)` needs.
const COLUMNS_SQL: &str = "\
SELECT n.nspname, c.relname, a.attname, a.atttypid, NOT a.attnotnull,
       a.attnotnull AND NOT a.atthasdef AND a.attidentity = '',
       EXISTS (SELECT 1 FROM pg_catalog.pg_index i
               WHERE i.indrelid = c.oid AND i.indisunique AND i.indnkeyatts = 1
                 AND i.indkey[0] = a.attnum AND i.indpred IS NULL AND i.indexprs IS NULL),
       pg_catalog.has_table_privilege(c.oid, 'SELECT'),
       pg_catalog.has_table_privilege(c.oid, 'INSERT'),
       pg_catalog.has_table_privilege(c.oid, 'UPDATE'),
       pg_catalog.has_table_privilege(c.oid, 'DELETE')
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p')
  AND NOT c.relispartition
  AND a.attgenerated = ''
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%'
  AND n.nspname NOT LIKE 'pg\\_temp\\_%'
  AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')
  AND pg_catalog.has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE')
  AND ($1::text IS NULL OR c.oid = $1::text::regclass)
ORDER BY n.nspname, c.relname, a.attnum";

/// The text type's OID, for the catalog query's parameter.
const TEXT_OID: Oid = 25;

/// A column of a writable table.
#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    /// The column's type; parameters are sent as text of this type, so
    /// the server parses each value with the column's own input function.
    pub oid: Oid,
    pub field: Field,
}

/// A table the user may write.
#[derive(Clone, Debug)]
pub struct Table {
    /// `schema.table`, as `discover` reports it.
    pub name: String,
    /// `"schema"."table"`, for SQL.
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

/// What the user may do to a table.
#[derive(Clone, Copy, Default)]
struct Privileges {
    select: bool,
    insert: bool,
    update: bool,
    delete: bool,
}

impl Privileges {
    /// The write modes these privileges allow. Upsert, update and delete
    /// match rows on an identifier column, so they also need one (and
    /// SELECT, to read it in the statement).
    fn modes(self, has_identifier: bool) -> Vec<WriteMode> {
        let keyed = has_identifier && self.select;
        let mut modes = Vec::new();
        if keyed && self.insert && self.update {
            modes.push(WriteMode::Upsert);
        }
        if keyed && self.update {
            modes.push(WriteMode::Update);
        }
        if self.insert {
            modes.extend([WriteMode::Insert, WriteMode::Append]);
        }
        if keyed && self.delete {
            modes.push(WriteMode::Delete);
        }
        modes
    }
}

/// The writable tables, or only the one `object` names (`table` or
/// `schema.table`, as the source reads them).
pub fn tables(conn: &mut Connection, object: Option<&str>) -> Result<Vec<Table>, PluginError> {
    let filter = object.map(regclass_text).transpose()?;
    let doing = match object {
        Some(name) => format!("looking up table `{name}`"),
        None => "discovering tables".to_owned(),
    };
    let rows = conn
        .query_params(COLUMNS_SQL, &[TEXT_OID], &[filter.as_deref()])?
        .map_err(|e| e.into_plugin_error(&doing))?;
    let mut oids: Vec<Oid> = Vec::new();
    let mut parsed = Vec::with_capacity(rows.len());
    for row in rows {
        let row = CatalogRow::parse(row)?;
        oids.push(row.oid);
        parsed.push(row);
    }
    oids.sort_unstable();
    oids.dedup();
    let kinds: HashMap<Oid, types::Kind> = oids
        .iter()
        .copied()
        .zip(types::resolve(conn, &oids)?)
        .collect();
    let mut tables: Vec<(Table, Privileges)> = Vec::new();
    for row in parsed {
        let column = Column {
            field: Field {
                name: row.column.clone(),
                type_: kinds[&row.oid].field_type(),
                nullable: row.nullable,
                required: row.required,
                identifier: row.identifier,
            },
            name: row.column,
            oid: row.oid,
        };
        match tables.last_mut() {
            Some((table, _)) if table.name == row.object => table.columns.push(column),
            _ => tables.push((
                Table {
                    name: row.object,
                    sql: format!("{}.{}", quote_ident(&row.schema), quote_ident(&row.table)),
                    columns: vec![column],
                    modes: Vec::new(),
                },
                row.privileges,
            )),
        }
    }
    Ok(tables
        .into_iter()
        .map(|(mut table, privileges)| {
            let has_identifier = table.columns.iter().any(|c| c.field.identifier);
            table.modes = privileges.modes(has_identifier);
            table
        })
        .collect())
}

/// `schema.table` (or `table`) as the text of a `regclass`: each part
/// quoted, so it is taken literally.
fn regclass_text(object: &str) -> Result<String, PluginError> {
    let parts = parse_object_name(object).map_err(PluginError::Permanent)?;
    Ok(parts
        .iter()
        .map(|p| quote_ident(p))
        .collect::<Vec<_>>()
        .join("."))
}

struct CatalogRow {
    schema: String,
    table: String,
    object: String,
    column: String,
    oid: Oid,
    nullable: bool,
    required: bool,
    identifier: bool,
    privileges: Privileges,
}

impl CatalogRow {
    fn parse(row: Vec<Option<String>>) -> Result<CatalogRow, PluginError> {
        let text = |i: usize| row.get(i).cloned().flatten();
        let flag = |i: usize| text(i).as_deref() == Some("t");
        let bad = || PluginError::Permanent(format!("unexpected catalog row {row:?}"));
        let (Some(schema), Some(table), Some(column), Some(oid)) =
            (text(0), text(1), text(2), text(3))
        else {
            return Err(bad());
        };
        Ok(CatalogRow {
            object: format_object_name(&schema, &table),
            schema,
            table,
            column,
            oid: oid.parse().map_err(|_| bad())?,
            nullable: flag(4),
            required: flag(5),
            identifier: flag(6),
            privileges: Privileges {
                select: flag(7),
                insert: flag(8),
                update: flag(9),
                delete: flag(10),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_follow_privileges_and_identifiers() {
        let all = Privileges {
            select: true,
            insert: true,
            update: true,
            delete: true,
        };
        assert_eq!(
            all.modes(true),
            [
                WriteMode::Upsert,
                WriteMode::Update,
                WriteMode::Insert,
                WriteMode::Append,
                WriteMode::Delete
            ]
        );
        assert_eq!(all.modes(false), [WriteMode::Insert, WriteMode::Append]);
        let insert_only = Privileges {
            insert: true,
            ..Default::default()
        };
        assert_eq!(
            insert_only.modes(true),
            [WriteMode::Insert, WriteMode::Append]
        );
    }

    #[test]
    fn object_names_become_quoted_regclass_text() {
        assert_eq!(
            regclass_text("public.users").unwrap(),
            r#""public"."users""#
        );
        assert_eq!(regclass_text("Users").unwrap(), r#""Users""#);
        assert_eq!(regclass_text(r#""a.b".t"#).unwrap(), r#""a.b"."t""#);
        assert!(regclass_text("a.b.c").is_err());
    }
}
