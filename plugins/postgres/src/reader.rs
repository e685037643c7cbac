//! Streaming a query's rows with the extended protocol: the statement is
//! parsed and described once, bound to a named portal inside a read-only
//! transaction, and every `next(max_rows)` sends `Execute(portal,
//! max_rows)` + `Sync`. The server stops after `max_rows` rows with
//! PortalSuspended and keeps the portal open until the transaction ends,
//! so memory holds one batch at a time, however large the result.

use crate::config::Config;
use crate::conn::{abbreviate, Connection};
use crate::decode::decode;
use crate::error::{io_error, unexpected, DbError};
use crate::types::{self, Kind, Oid};
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::{DataRowBody, Message};
use postgres_protocol::message::frontend::{self, BindError};
use postgres_protocol::IsNull;
use sluice_sdk::{Batch, PluginError, Reader, Row, Value};

const STATEMENT: &str = "sluice_read";
const PORTAL: &str = "sluice_cursor";
/// Rows reserved up front per batch; larger batches grow as rows arrive.
const MAX_PREALLOCATED_ROWS: usize = 16 * 1024;

/// A result column.
struct Column {
    name: String,
    oid: Oid,
    kind: Kind,
}

pub struct PgReader {
    /// `None` once the result is exhausted (or failed).
    conn: Option<Connection>,
    names: Vec<String>,
    columns: Vec<Column>,
    rows_read: u64,
    /// `host:port` and `query: SELECT ...`, for error messages.
    target: String,
    context: String,
}

impl PgReader {
    /// Connect, open a read-only snapshot and position a cursor on `sql`.
    pub fn open(config: &Config, sql: &str) -> Result<PgReader, PluginError> {
        let mut conn = Connection::connect(config)?;
        conn.simple_query(begin_statement(conn.redshift))?;
        PgReader::open_in_transaction(conn, sql)
    }

    /// Position a cursor on `sql` on `conn`, whose read transaction the
    /// caller began (the warehouse diff describes the model in it first).
    pub fn open_in_transaction(mut conn: Connection, sql: &str) -> Result<PgReader, PluginError> {
        let context = format!("query: {}", abbreviate(sql));
        let columns = match position(&mut conn, sql, &context) {
            Ok(columns) => columns,
            Err(error) => {
                // Hang up politely rather than leave the server an EOF.
                conn.terminate();
                return Err(error);
            }
        };
        Ok(PgReader {
            target: conn.target().to_owned(),
            conn: Some(conn),
            names: columns.iter().map(|c| c.name.clone()).collect(),
            columns,
            rows_read: 0,
            context,
        })
    }

    /// Decode one DataRow into a row of values.
    fn decode_row(&self, row: &DataRowBody, index: u64) -> Result<Row, PluginError> {
        let buf = row.buffer();
        let mut values = Vec::with_capacity(self.columns.len());
        let mut ranges = row.ranges();
        while let Some(range) = ranges.next().map_err(|e| self.protocol_error(&e))? {
            let column = self
                .columns
                .get(values.len())
                .ok_or_else(|| self.width_error(values.len() + 1))?;
            let value = match range {
                None => Value::Null,
                Some(range) => decode(column.kind, &buf[range])
                    .map_err(|e| self.value_error(column, index, &e))?,
            };
            values.push(value);
        }
        if values.len() != self.columns.len() {
            return Err(self.width_error(values.len()));
        }
        Ok(values)
    }

    fn value_error(&self, column: &Column, index: u64, error: &str) -> PluginError {
        PluginError::Permanent(format!(
            "column `{}` (type OID {}) of row {index}: {error} ({})",
            column.name, column.oid, self.context
        ))
    }

    fn width_error(&self, got: usize) -> PluginError {
        PluginError::Permanent(format!(
            "the server sent a row of {got} values for {} columns ({})",
            self.columns.len(),
            self.context
        ))
    }

    fn protocol_error(&self, error: &std::io::Error) -> PluginError {
        io_error(
            &self.target,
            &format!("reading rows of {}", self.context),
            error,
        )
    }

    /// End the read: commit the read-only transaction and hang up.
    fn finish(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            // Nothing was written; a failed COMMIT loses nothing.
            let _ = conn.simple_query("COMMIT");
            conn.terminate();
        }
    }

    /// One `Execute` round trip: the rows it returned and whether the
    /// result is complete.
    fn fetch(&self, conn: &mut Connection, limit: i32) -> Result<(Vec<Row>, bool), PluginError> {
        let doing = format!("reading rows of {}", self.context);
        let encoded = frontend::execute(PORTAL, limit, conn.buf());
        encoded.map_err(|e| io_error(&self.target, &doing, &e))?;
        frontend::sync(conn.buf());
        conn.send(&doing)?;
        let mut rows = Vec::with_capacity((limit as usize).min(MAX_PREALLOCATED_ROWS));
        let (mut done, mut error) = (false, None);
        loop {
            match conn.recv(&doing)? {
                // After an error, the rest of the answer is drained unread
                // so the connection stays in step.
                Message::DataRow(row) if error.is_none() => {
                    let index = self.rows_read + rows.len() as u64 + 1;
                    match self.decode_row(&row, index) {
                        Ok(values) => rows.push(values),
                        Err(e) => error = Some(e),
                    }
                }
                Message::DataRow(_) | Message::PortalSuspended => {}
                Message::CommandComplete(_) | Message::EmptyQueryResponse => done = true,
                Message::ErrorResponse(body) if error.is_none() => {
                    error = Some(DbError::parse(&body).into_plugin_error(&self.context));
                }
                Message::ReadyForQuery(_) => break,
                Message::CopyInResponse(_) | Message::CopyOutResponse(_) => {
                    error = Some(unexpected(&self.target, &doing, "COPY (not supported)"));
                }
                _ => {}
            }
        }
        error.map_or(Ok((rows, done)), Err)
    }
}

impl Reader for PgReader {
    fn next(&mut self, max_rows: u32) -> Result<Option<Batch>, PluginError> {
        let Some(mut conn) = self.conn.take() else {
            return Ok(None);
        };
        // Execute treats 0 as "all rows": never ask for that.
        let limit = max_rows.clamp(1, i32::MAX as u32) as i32;
        let fetched = self.fetch(&mut conn, limit);
        self.conn = Some(conn);
        let (rows, done) = match fetched {
            Ok(fetched) => fetched,
            Err(error) => {
                self.finish();
                return Err(error);
            }
        };
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

impl Drop for PgReader {
    fn drop(&mut self) {
        // Dropped mid-read: hanging up makes the server roll back.
        if let Some(conn) = self.conn.take() {
            conn.terminate();
        }
    }
}

/// Bind `sql` to the portal inside the read's transaction; return the
/// result's columns.
fn position(conn: &mut Connection, sql: &str, context: &str) -> Result<Vec<Column>, PluginError> {
    let described = describe(conn, STATEMENT, sql, context)?;
    let oids: Vec<Oid> = described.iter().map(|(_, oid)| *oid).collect();
    let kinds = types::resolve(conn, &oids)?;
    bind(conn, &kinds, context)?;
    Ok(described
        .into_iter()
        .zip(kinds)
        .map(|((name, oid), kind)| Column { name, oid, kind })
        .collect())
}

/// The statement that opens the read's transaction: one snapshot for the
/// whole read, however many batches it takes, and read-only because a
/// source must never change the source. Redshift's own isolation
/// (serializable or snapshot, per database) already gives one snapshot per
/// transaction and it maps every named level to it, so its mode leaves the
/// level out rather than name one it does not have.
pub fn begin_statement(redshift: bool) -> &'static str {
    if redshift {
        "BEGIN READ ONLY"
    } else {
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
    }
}

/// Parse and describe `sql` as the named statement; return its result
/// columns (name, type OID). A statement without a result has none.
pub fn describe(
    conn: &mut Connection,
    statement: &str,
    sql: &str,
    context: &str,
) -> Result<Vec<(String, Oid)>, PluginError> {
    let doing = format!("preparing {context}");
    let target = conn.target().to_owned();
    frontend::parse(statement, sql, None, conn.buf()).map_err(|e| io_error(&target, &doing, &e))?;
    frontend::describe(b'S', statement, conn.buf()).map_err(|e| io_error(&target, &doing, &e))?;
    frontend::sync(conn.buf());
    conn.send(&doing)?;
    let mut columns = Vec::new();
    let mut error = None;
    loop {
        match conn.recv(&doing)? {
            Message::ParameterDescription(body) => {
                let count = body
                    .parameters()
                    .count()
                    .map_err(|e| io_error(&target, &doing, &e))?;
                if count > 0 && error.is_none() {
                    error = Some(PluginError::Permanent(format!(
                        "the query has {count} parameter(s) ($1...) but Sluice passes none ({context})"
                    )));
                }
            }
            Message::RowDescription(body) => {
                let mut fields = body.fields();
                while let Some(field) = fields.next().map_err(|e| io_error(&target, &doing, &e))? {
                    columns.push((field.name().to_owned(), field.type_oid()));
                }
            }
            Message::ErrorResponse(body) if error.is_none() => {
                error = Some(DbError::parse(&body).into_plugin_error(context));
            }
            Message::ReadyForQuery(_) => break,
            _ => {}
        }
    }
    error.map_or(Ok(columns), Err)
}

/// Bind the statement to the portal, asking for binary or text per column.
fn bind(conn: &mut Connection, kinds: &[Kind], context: &str) -> Result<(), PluginError> {
    let doing = format!("binding {context}");
    let formats = kinds.iter().map(|k| i16::from(k.binary()));
    let no_params = std::iter::empty::<()>();
    frontend::bind(
        PORTAL,
        STATEMENT,
        None,
        no_params,
        |(), _| Ok(IsNull::No),
        formats,
        conn.buf(),
    )
    .map_err(|e| {
        let why = match e {
            BindError::Conversion(e) => e.to_string(),
            BindError::Serialization(e) => e.to_string(),
        };
        PluginError::Permanent(format!("cannot encode Bind while {doing}: {why}"))
    })?;
    frontend::sync(conn.buf());
    conn.send(&doing)?;
    conn.wait_ready(context)
}

/// Split `name` into an optional schema and a relation: `table`,
/// `schema.table`, with double quotes around a part that contains a dot
/// (`"a.b".c`, `""` for a quote). Parts are exact names: no case folding.
pub fn parse_object_name(name: &str) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut chars = name.chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err(format!("object `{name}` has an unterminated quote")),
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
        return Err(format!("object `{name}` must be `table` or `schema.table`"));
    }
    Ok(parts)
}

/// The name `discover` reports, which `parse_object_name` reads back.
pub fn format_object_name(schema: &str, table: &str) -> String {
    let part = |p: &str| {
        if p.contains(['.', '"']) {
            format!("\"{}\"", p.replace('"', "\"\""))
        } else {
            p.to_owned()
        }
    };
    format!("{}.{}", part(schema), part(table))
}

/// A SQL identifier, always quoted so any name is taken literally.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `SELECT * FROM "schema"."table"` for an object name.
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
            parse_object_name("Sales.Orders").unwrap(),
            ["Sales", "Orders"]
        );
        assert_eq!(
            parse_object_name(r#""a.b"."x""y""#).unwrap(),
            ["a.b", "x\"y"]
        );
        for name in ["", "a.", ".a", "a.b.c", "\"a", "\"a\"b"] {
            assert!(parse_object_name(name).is_err(), "{name}");
        }
        let formatted = format_object_name("a.b", "x\"y");
        assert_eq!(formatted, r#""a.b"."x""y""#);
        assert_eq!(parse_object_name(&formatted).unwrap(), ["a.b", "x\"y"]);
        assert_eq!(
            object_query("s.t\"; DROP TABLE x; --").unwrap(),
            r#"SELECT * FROM "s"."t""; DROP TABLE x; --""#
        );
    }
}
