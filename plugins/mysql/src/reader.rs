//! Streaming a query's rows with the text protocol. The server pushes the
//! whole result down the socket after one COM_QUERY; each `next(max_rows)`
//! decodes at most `max_rows` row packets off it and stops, so TCP flow
//! control holds the server back while a batch is delivered and memory
//! holds one batch at a time, however large the result.

use crate::config::Config;
use crate::conn::{abbreviate, next_value, Connection, Next};
use crate::discover::json_columns;
use crate::error::unexpected;
use crate::types::{self, DecodeError, Kind};
use mysql_common::constants::ColumnFlags;
use mysql_common::io::ParseBuf;
use mysql_common::packets::Column;
use sluice_sdk::{Batch, PluginError, Reader, Row, Value};
use std::collections::HashSet;

/// Rows reserved up front per batch; larger batches grow as rows arrive.
const MAX_PREALLOCATED_ROWS: usize = 16 * 1024;

/// A result column.
struct ResultColumn {
    name: String,
    /// `DATE`, `LONGLONG`..., for error messages.
    type_name: String,
    kind: Kind,
}

pub struct MyReader {
    /// `None` once the result is exhausted (or failed).
    conn: Option<Connection>,
    names: Vec<String>,
    columns: Vec<ResultColumn>,
    /// Result columns that are part of their table's primary key, to name
    /// a failing row by its key.
    key_columns: Vec<usize>,
    rows_read: u64,
    /// `query: SELECT ...`, for error messages.
    context: String,
}

impl MyReader {
    /// Connect, open a read-only consistent snapshot and start `sql`.
    pub fn open(config: &Config, sql: &str) -> Result<MyReader, PluginError> {
        let context = format!("query: {}", abbreviate(sql));
        let mut conn = Connection::connect(config)?;
        match start(&mut conn, config, sql, &context) {
            Ok(columns) => Ok(MyReader::new(conn, columns, context)),
            Err(error) => {
                conn.terminate();
                Err(error)
            }
        }
    }

    fn new(conn: Connection, result: Vec<(Column, Kind)>, context: String) -> MyReader {
        let key_columns = result
            .iter()
            .enumerate()
            .filter(|(_, (c, _))| c.flags().contains(ColumnFlags::PRI_KEY_FLAG))
            .map(|(i, _)| i)
            .collect();
        let columns: Vec<ResultColumn> = result
            .into_iter()
            .map(|(column, kind)| ResultColumn {
                name: column.name_str().into_owned(),
                type_name: type_name(&column),
                kind,
            })
            .collect();
        MyReader {
            conn: Some(conn),
            names: columns.iter().map(|c| c.name.clone()).collect(),
            columns,
            key_columns,
            rows_read: 0,
            context,
        }
    }

    /// Decode the current row packet.
    fn decode_row(&self, packet: &[u8], index: u64, target: &str) -> Result<Row, PluginError> {
        let mut buf = ParseBuf(packet);
        let mut values = Vec::with_capacity(self.columns.len());
        for column in &self.columns {
            let value = match next_value(&mut buf) {
                None => {
                    return Err(unexpected(
                        target,
                        &format!("reading row {index} of {}", self.context),
                        packet,
                    ))
                }
                Some(None) => Value::Null,
                Some(Some(raw)) => types::decode(column.kind, raw)
                    .map_err(|e| self.value_error(column, index, packet, e))?,
            };
            values.push(value);
        }
        Ok(values)
    }

    /// A value that has no `Value`: names the column, its type, the row's
    /// number and its primary key values.
    fn value_error(
        &self,
        column: &ResultColumn,
        index: u64,
        packet: &[u8],
        error: DecodeError,
    ) -> PluginError {
        let why = match error {
            DecodeError::ZeroDate(text) => format!(
                "zero date `{text}` has no calendar date (MySQL stores it under lenient SQL modes); \
                 fix the row, or select the column with NULLIF/CAST to read it another way"
            ),
            DecodeError::Invalid(why) => why,
        };
        PluginError::Permanent(format!(
            "column `{}` ({}) of row {index}{}: {why} ({})",
            column.name,
            column.type_name,
            self.row_key(packet),
            self.context
        ))
    }

    /// ` (id = 7, tenant = 3)` from the raw row, or nothing without a key.
    fn row_key(&self, packet: &[u8]) -> String {
        if self.key_columns.is_empty() {
            return String::new();
        }
        let mut buf = ParseBuf(packet);
        let mut raw = Vec::with_capacity(self.columns.len());
        for _ in &self.columns {
            match next_value(&mut buf) {
                Some(value) => raw.push(value),
                None => return String::new(),
            }
        }
        let parts: Vec<String> = self
            .key_columns
            .iter()
            .map(|&i| {
                let value = raw[i].map_or("NULL".into(), |v| String::from_utf8_lossy(v));
                format!("{} = {value}", self.columns[i].name)
            })
            .collect();
        format!(" ({})", parts.join(", "))
    }

    /// End the read: commit the read-only transaction and hang up.
    fn finish(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            // Nothing was written; a failed COMMIT loses nothing.
            let _ = conn.execute("COMMIT");
            conn.terminate();
        }
    }

    /// Up to `limit` rows; `true` once the result is complete.
    fn fetch(&self, conn: &mut Connection, limit: usize) -> Result<(Vec<Row>, bool), PluginError> {
        let mut rows = Vec::with_capacity(limit.min(MAX_PREALLOCATED_ROWS));
        while rows.len() < limit {
            match conn.next_row(&self.context)? {
                Next::Done => return Ok((rows, true)),
                Next::Row => {
                    let index = self.rows_read + rows.len() as u64 + 1;
                    rows.push(self.decode_row(conn.row(), index, conn.target())?);
                }
            }
        }
        Ok((rows, false))
    }
}

impl Reader for MyReader {
    fn next(&mut self, max_rows: u32) -> Result<Option<Batch>, PluginError> {
        let Some(mut conn) = self.conn.take() else {
            return Ok(None);
        };
        let fetched = self.fetch(&mut conn, max_rows.max(1) as usize);
        let (rows, done) = match fetched {
            Ok(fetched) => fetched,
            Err(error) => {
                // The rest of the result is still on the wire: hanging up
                // is the only way to stop it.
                drop(conn);
                return Err(error);
            }
        };
        self.conn = Some(conn);
        self.rows_read += rows.len() as u64;
        if done {
            self.finish();
        }
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(Batch {
            columns: self.names.clone(),
            rows,
        }))
    }
}

impl Drop for MyReader {
    fn drop(&mut self) {
        // Dropped mid-read: hanging up ends the query and the transaction.
        if let Some(conn) = self.conn.take() {
            conn.terminate();
        }
    }
}

/// Start the snapshot and the query; the result's columns with their kinds.
fn start(
    conn: &mut Connection,
    config: &Config,
    sql: &str,
    context: &str,
) -> Result<Vec<(Column, Kind)>, PluginError> {
    // MariaDB stores JSON as LONGTEXT; its columns are known by their
    // json_valid() check, which must be looked up before the result streams.
    let declared_json = if conn.is_mariadb() {
        json_columns(conn)?
    } else {
        HashSet::new()
    };
    // One snapshot for the whole read; read-only because a source must
    // never change the source.
    conn.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")?;
    let columns = conn.start_query(sql)?;
    if columns.is_empty() {
        return Err(PluginError::Permanent(format!(
            "the statement returns no rows; a source reads a SELECT ({context})"
        )));
    }
    Ok(columns
        .into_iter()
        .map(|column| {
            let name = column.name_str();
            let json = config.json_columns.iter().any(|c| *c == name)
                || declared_json.contains(&(
                    column.schema_str().into_owned(),
                    column.org_table_str().into_owned(),
                    column.org_name_str().into_owned(),
                ));
            let kind = types::kind_of(&column, json);
            (column, kind)
        })
        .collect())
}

/// `DATE`, `NEWDECIMAL`, `LONGLONG UNSIGNED`...
fn type_name(column: &Column) -> String {
    let name = format!("{:?}", column.column_type());
    let name = name.trim_start_matches("MYSQL_TYPE_").to_owned();
    if column.flags().contains(ColumnFlags::UNSIGNED_FLAG) {
        name + " UNSIGNED"
    } else {
        name
    }
}

/// Split `name` into an optional database and a table: `table` or
/// `database.table`, with backticks around a part that contains a dot
/// (`` `a.b`.c ``, ``` `` ``` for a backtick). Parts are exact names.
pub fn parse_object_name(name: &str) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut chars = name.chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'`') {
            chars.next();
            loop {
                match chars.next() {
                    Some('`') if chars.peek() == Some(&'`') => {
                        chars.next();
                        part.push('`');
                    }
                    Some('`') => break,
                    Some(c) => part.push(c),
                    None => return Err(format!("object `{name}` has an unterminated backtick")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|&c| c != '.') {
                part.push(c);
            }
        }
        if part.is_empty() || part.contains('\0') {
            return Err(format!("object `{name}` has an empty or invalid name part"));
        }
        parts.push(part);
        match chars.next() {
            None => break,
            Some('.') => {}
            Some(c) => {
                return Err(format!(
                    "object `{name}`: unexpected `{c}` after a quoted name"
                ))
            }
        }
    }
    if parts.len() > 2 {
        return Err(format!(
            "object `{name}` must be `table` or `database.table`"
        ));
    }
    Ok(parts)
}

/// The name `discover` reports for a table, which `parse_object_name` reads back.
pub fn format_object_name(table: &str) -> String {
    if table.contains(['.', '`']) {
        quote_ident(table)
    } else {
        table.to_owned()
    }
}

/// An identifier in backticks, so any name is taken literally.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `SELECT * FROM `db`.`table`` for an object name.
pub fn object_query(name: &str) -> Result<String, PluginError> {
    let parts = parse_object_name(name).map_err(PluginError::Permanent)?;
    let quoted: Vec<String> = parts.iter().map(|p| quote_ident(p)).collect();
    Ok(format!("SELECT * FROM {}", quoted.join(".")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_round_trip_and_quote_safely() {
        assert_eq!(parse_object_name("users").unwrap(), ["users"]);
        assert_eq!(
            parse_object_name("shop.Orders").unwrap(),
            ["shop", "Orders"]
        );
        assert_eq!(parse_object_name("`a.b`.`x``y`").unwrap(), ["a.b", "x`y"]);
        for name in ["", "a.", ".a", "a.b.c", "`a", "`a`b"] {
            assert!(parse_object_name(name).is_err(), "{name}");
        }
        assert_eq!(format_object_name("a.b"), "`a.b`");
        assert_eq!(
            parse_object_name(&format_object_name("x`y.z")).unwrap(),
            ["x`y.z"]
        );
        assert_eq!(
            object_query("s.t`; DROP TABLE x; --").unwrap(),
            "SELECT * FROM `s`.`t``; DROP TABLE x; --`"
        );
    }
}
