//! Listing the tables, views, materialized views and foreign tables the
//! user can read, with their columns and primary keys.

use crate::conn::Connection;
use crate::reader::format_object_name;
use crate::types::{self, Oid};
use sluice_sdk::{Field, ObjectInfo, PluginError};
use std::collections::HashMap;

/// One row per column, ordered by object and column position. Partitions
/// are left out (their parent covers them), and so are system schemas and
/// relations the user may not select from.
const COLUMNS_SQL: &str = "\
SELECT n.nspname, c.relname, a.attname, a.atttypid, NOT a.attnotnull,
       COALESCE(a.attnum = ANY (i.indkey), false)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_catalog.pg_index i ON i.indrelid = c.oid AND i.indisprimary
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%'
  AND n.nspname NOT LIKE 'pg\\_temp\\_%'
  AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')
  AND pg_catalog.has_any_column_privilege(c.oid, 'SELECT')
ORDER BY n.nspname, c.relname, a.attnum";

/// [`COLUMNS_SQL`] in what Redshift's PostgreSQL 8.0-era catalog has:
/// no `relispartition`, no `has_any_column_privilege`, and no indexes, so
/// primary keys come from `pg_constraint` (Redshift records them there,
/// informational only). Only tables and views: Redshift has no other
/// relation kinds in pg_class (external tables live in
/// `svv_external_columns`; late-binding views have no pg_attribute rows).
/// Every `pg_`-prefixed schema is a system one (the prefix is reserved in
/// both), tested with `substr` rather than LIKE, whose backslash escape
/// depends on `standard_conforming_strings`, off in Redshift. The
/// privilege checks take OIDs (the PostgreSQL 7.3 forms, which Redshift's
/// fork keeps; the name forms fail on a schema without USAGE). Runs
/// unchanged on PostgreSQL, which is how it is tested.
const REDSHIFT_COLUMNS_SQL: &str = "\
SELECT n.nspname, c.relname, a.attname, a.atttypid, NOT a.attnotnull,
       COALESCE(a.attnum = ANY (k.conkey), false)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_catalog.pg_constraint k ON k.conrelid = c.oid AND k.contype = 'p'
WHERE c.relkind IN ('r', 'v')
  AND substr(n.nspname, 1, 3) <> 'pg_'
  AND n.nspname <> 'information_schema'
  AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')
  AND pg_catalog.has_table_privilege(c.oid, 'SELECT')
ORDER BY n.nspname, c.relname, a.attnum";

struct ColumnRow {
    object: String,
    name: String,
    oid: Oid,
    nullable: bool,
    primary_key: bool,
}

pub fn discover(conn: &mut Connection) -> Result<Vec<ObjectInfo>, PluginError> {
    let rows: Vec<ColumnRow> = conn
        .simple_query(columns_sql(conn.redshift))?
        .into_iter()
        .map(column_row)
        .collect::<Result<_, _>>()?;
    let mut oids: Vec<Oid> = rows.iter().map(|r| r.oid).collect();
    oids.sort_unstable();
    oids.dedup();
    let kinds: HashMap<Oid, types::Kind> = oids
        .iter()
        .copied()
        .zip(types::resolve(conn, &oids)?)
        .collect();
    let mut objects: Vec<ObjectInfo> = Vec::new();
    for row in rows {
        let field = Field {
            name: row.name,
            type_: kinds[&row.oid].field_type(),
            nullable: row.nullable,
            // A source never requires anything of a write.
            required: false,
            identifier: row.primary_key,
        };
        match objects.last_mut() {
            Some(object) if object.name == row.object => object.fields.push(field),
            _ => objects.push(ObjectInfo {
                name: row.object,
                fields: vec![field],
                modes: Vec::new(),
            }),
        }
    }
    Ok(objects)
}

/// The catalog query for the server: PostgreSQL's or Redshift's.
pub fn columns_sql(redshift: bool) -> &'static str {
    if redshift {
        REDSHIFT_COLUMNS_SQL
    } else {
        COLUMNS_SQL
    }
}

fn column_row(row: Vec<Option<String>>) -> Result<ColumnRow, PluginError> {
    let text = |i: usize| row.get(i).cloned().flatten();
    let missing =
        || PluginError::Permanent(format!("unexpected catalog row {row:?} while discovering"));
    let (Some(schema), Some(table), Some(name), Some(oid)) = (text(0), text(1), text(2), text(3))
    else {
        return Err(missing());
    };
    Ok(ColumnRow {
        object: format_object_name(&schema, &table),
        name,
        oid: oid.parse().map_err(|_| missing())?,
        nullable: text(4).as_deref() == Some("t"),
        primary_key: text(5).as_deref() == Some("t"),
    })
}
