//! Writing a batch: the statements of each mode, one transaction per
//! batch, and the isolation of the rows the database refuses.

use crate::catalog::{self, Column, Table};
use crate::literal::literal;
use crate::session;
use mysql::config::Config;
use mysql::conn::Connection;
use mysql::error::DbError;
use mysql::reader::quote_ident;
use sluice_sdk::{Batch, PluginError, RowResult, Value, WriteMode, WriteTarget, Writer};

/// The longest statement sent, whatever the server allows: a large batch
/// goes in several statements of one transaction.
const MAX_STATEMENT_BYTES: usize = 8 * 1024 * 1024;

/// Server errors that blame the data of a row rather than the statement:
/// duplicate keys (1062), NULL or missing values for NOT NULL columns
/// (1048, 1263, 1364), values out of range, truncated or malformed (1264,
/// 1265, 1292, 1366, 1367, 1406, 1411, 1690, 3140), foreign keys (1216,
/// 1217, 1451, 1452), CHECK constraints (MySQL 3819, MariaDB 4025) and a
/// trigger's SIGNAL (1644). A statement failing with one of these is
/// retried in halves, down to the rows at fault.
const ROW_LEVEL_ERRORS: [u16; 21] = [
    1062, 1048, 1263, 1364, 1264, 1265, 1292, 1366, 1367, 1406, 1411, 1690, 3140, 1216, 1217, 1451,
    1452, 3819, 4025, 1644, 1242,
];

fn is_row_level(error: &DbError) -> bool {
    ROW_LEVEL_ERRORS.contains(&error.code)
}

pub struct MyWriter {
    config: Config,
    /// `None` after a failure broke the session; the next write reconnects.
    conn: Option<Connection>,
    table: Table,
    target: WriteTarget,
    /// The longest statement to send: below the server's max_allowed_packet.
    max_statement: usize,
}

impl MyWriter {
    /// Connect, look the target table up and check that it takes this mode.
    pub fn open(config: Config, target: WriteTarget) -> Result<MyWriter, PluginError> {
        let mut conn = session::connect(&config)?;
        match prepare(&mut conn, &config, &target) {
            Ok((table, max_statement)) => Ok(MyWriter {
                config,
                conn: Some(conn),
                table,
                target,
                max_statement,
            }),
            Err(error) => {
                conn.terminate();
                Err(error)
            }
        }
    }

    fn connection(&mut self) -> Result<Connection, PluginError> {
        match self.conn.take() {
            Some(conn) => Ok(conn),
            None => session::connect(&self.config),
        }
    }
}

/// The target table, checked against the mode, and the statement size limit.
fn prepare(
    conn: &mut Connection,
    config: &Config,
    target: &WriteTarget,
) -> Result<(Table, usize), PluginError> {
    let table = catalog::tables(conn, Some(&target.object))?
        .into_iter()
        .next()
        .ok_or_else(|| {
            PluginError::Permanent(format!(
                "`{}` is not a table of database `{}` that user `{}` can see on {}",
                target.object,
                config.database,
                config.user,
                config.target()
            ))
        })?;
    check_target(&table, target)?;
    let packet = conn
        .query_rows("SELECT @@max_allowed_packet")?
        .into_iter()
        .next()
        .and_then(|row| row.into_iter().next().flatten())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1024 * 1024);
    // Room for the packet header and the statement's fixed parts.
    let max_statement = packet.saturating_sub(1024).clamp(4096, MAX_STATEMENT_BYTES);
    Ok((table, max_statement))
}

/// The mode must be one the table takes, and a keyed mode's identifier a
/// column that identifies rows.
fn check_target(table: &Table, target: &WriteTarget) -> Result<(), PluginError> {
    if !table.modes.contains(&target.mode) {
        return Err(PluginError::Permanent(format!(
            "`{}` does not take {} writes (it takes: {}); upsert, update and delete need a \
             column that alone is a unique key",
            table.name,
            mode_name(target.mode),
            table
                .modes
                .iter()
                .map(|m| mode_name(*m))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if matches!(target.mode, WriteMode::Insert | WriteMode::Append) {
        return Ok(());
    }
    match table.column(&target.identifier) {
        Some(c) if c.field.identifier => Ok(()),
        Some(_) => Err(PluginError::Permanent(format!(
            "column `{}` of `{}` cannot identify rows: it is not alone a unique key",
            target.identifier, table.name
        ))),
        None => Err(PluginError::Permanent(format!(
            "identifier `{}` is not a column of `{}`",
            target.identifier, table.name
        ))),
    }
}

fn mode_name(mode: WriteMode) -> &'static str {
    match mode {
        WriteMode::Upsert => "upsert",
        WriteMode::Update => "update",
        WriteMode::Insert => "insert",
        WriteMode::Delete => "delete",
        WriteMode::Append => "append",
    }
}

/// The statements of one mode for a batch's columns.
struct Statement<'t> {
    mode: WriteMode,
    table: &'t Table,
    columns: Vec<&'t Column>,
    /// The identifier's position among `columns`, for keyed modes.
    id: Option<usize>,
}

impl<'t> Statement<'t> {
    fn new(table: &'t Table, target: &WriteTarget, names: &[String]) -> Result<Self, PluginError> {
        if names.is_empty() {
            return Err(PluginError::Permanent("the batch has no columns".into()));
        }
        let mut columns = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(PluginError::Permanent(format!(
                    "the batch has column `{name}` twice"
                )));
            }
            columns.push(table.column(name).ok_or_else(|| {
                PluginError::Permanent(format!(
                    "`{name}` is not a writable column of `{}`; its columns: {}",
                    table.name,
                    table
                        .columns
                        .iter()
                        .map(|c| format!("`{}`", c.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?);
        }
        let id = match target.mode {
            WriteMode::Insert | WriteMode::Append => None,
            _ => Some(
                names
                    .iter()
                    .position(|n| *n == target.identifier)
                    .ok_or_else(|| {
                        PluginError::Permanent(format!(
                            "the batch has no identifier column `{}` ({} writes match rows on it)",
                            target.identifier,
                            mode_name(target.mode)
                        ))
                    })?,
            ),
        };
        Ok(Statement {
            mode: target.mode,
            table,
            columns,
            id,
        })
    }

    fn id(&self) -> usize {
        self.id.unwrap_or(0)
    }

    fn id_sql(&self) -> String {
        quote_ident(&self.columns[self.id()].name)
    }

    /// `expr` compared as the identifier column compares: in its
    /// character set and collation for text (a literal would otherwise
    /// meet the column in the connection's collation).
    fn as_identifier(&self, expr: &str) -> String {
        match &self.columns[self.id()].collation {
            Some((charset, collation)) => format!(
                "CONVERT({expr} USING {}) COLLATE {}",
                quote_ident(charset),
                quote_ident(collation)
            ),
            None => expr.to_owned(),
        }
    }

    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The non-identifier columns, which upsert and update write.
    fn values_columns(&self) -> impl Iterator<Item = &&'t Column> {
        let id = self.id.unwrap_or(usize::MAX);
        self.columns
            .iter()
            .enumerate()
            .filter(move |(i, _)| *i != id)
            .map(|(_, c)| c)
    }

    /// The write of `rows` (their literals), or `None` when there is
    /// nothing to write (an update of the identifier alone).
    fn sql(&self, rows: &[&[String]]) -> Option<String> {
        let table = &self.table.sql;
        let tuples = || {
            rows.iter()
                .map(|r| format!("({})", r.join(", ")))
                .collect::<Vec<_>>()
                .join(", ")
        };
        Some(match self.mode {
            WriteMode::Insert | WriteMode::Append => {
                format!(
                    "INSERT INTO {table} ({}) VALUES {}",
                    self.column_list(),
                    tuples()
                )
            }
            WriteMode::Upsert => {
                let mut set: Vec<String> = self
                    .values_columns()
                    .map(|c| format!("{0} = VALUES({0})", quote_ident(&c.name)))
                    .collect();
                if set.is_empty() {
                    set.push(format!("{0} = {0}", self.id_sql()));
                }
                format!(
                    "INSERT INTO {table} ({}) VALUES {} ON DUPLICATE KEY UPDATE {}",
                    self.column_list(),
                    tuples(),
                    set.join(", ")
                )
            }
            WriteMode::Update => {
                let set: Vec<String> = self
                    .values_columns()
                    .map(|c| format!("{table}.{0} = v.{0}", quote_ident(&c.name)))
                    .collect();
                if set.is_empty() {
                    return None;
                }
                format!(
                    "UPDATE {table} JOIN ({}) AS v ON {table}.{id} = {cmp} SET {}",
                    self.derived(rows),
                    set.join(", "),
                    id = self.id_sql(),
                    cmp = self.as_identifier(&format!("v.{}", self.id_sql())),
                )
            }
            WriteMode::Delete => {
                let ids: Vec<&str> = rows.iter().map(|r| r[self.id()].as_str()).collect();
                format!(
                    "DELETE FROM {table} WHERE {} IN ({})",
                    self.id_sql(),
                    ids.join(", ")
                )
            }
        })
    }

    /// `SELECT l AS a, l AS b UNION ALL SELECT l, l`: rows as a table.
    fn derived(&self, rows: &[&[String]]) -> String {
        let mut sql = String::new();
        for (r, row) in rows.iter().enumerate() {
            if r > 0 {
                sql.push_str(" UNION ALL ");
            }
            sql.push_str("SELECT ");
            let values: Vec<String> = if r == 0 {
                row.iter()
                    .zip(&self.columns)
                    .map(|(v, c)| format!("{v} AS {}", quote_ident(&c.name)))
                    .collect()
            } else {
                row.to_vec()
            };
            sql.push_str(&values.join(", "));
        }
        sql
    }

    /// Which of `rows` (their literals, by position) exist, locked until
    /// the transaction ends so the answer holds for the write.
    fn existing_sql(&self, rows: &[(usize, &[String])]) -> String {
        let mut derived = String::new();
        for (i, (position, row)) in rows.iter().enumerate() {
            if i > 0 {
                derived.push_str(" UNION ALL ");
            }
            let id = &row[self.id()];
            if i == 0 {
                derived.push_str(&format!("SELECT {position} AS o, {id} AS k"));
            } else {
                derived.push_str(&format!("SELECT {position}, {id}"));
            }
        }
        format!(
            "SELECT v.o FROM ({derived}) AS v JOIN {table} ON {table}.{id} = {cmp} FOR UPDATE",
            table = self.table.sql,
            id = self.id_sql(),
            cmp = self.as_identifier("v.k"),
        )
    }

    /// A row update did not find.
    fn missing(&self, row: &[Value]) -> RowResult {
        let mut value = String::new();
        match row.get(self.id()) {
            Some(Value::Null) | None => value.push_str("NULL"),
            Some(v) => v.write_text(&mut value),
        }
        RowResult::Rejected(format!(
            "no row of `{}` has `{}` = {value}",
            self.table.name,
            self.columns[self.id()].name
        ))
    }
}

/// One batch's work on one connection.
struct Batcher<'a> {
    conn: &'a mut Connection,
    statement: &'a Statement<'a>,
    batch: &'a Batch,
    /// Each row's literals; rows that have none were rejected already.
    literals: Vec<Option<Vec<String>>>,
    results: Vec<Option<RowResult>>,
    /// Rows that exist (upsert and update), by position.
    existing: Vec<bool>,
    max_statement: usize,
}

impl Batcher<'_> {
    fn context(&self) -> String {
        format!(
            "{} of {} row(s) into `{}`",
            mode_name(self.statement.mode),
            self.batch.rows.len(),
            self.statement.table.name
        )
    }

    /// The positions of the rows still to write, in pieces that keep each
    /// statement under the size limit.
    fn pieces(&self, rows: &[usize]) -> Vec<Vec<usize>> {
        let mut pieces: Vec<Vec<usize>> = Vec::new();
        let mut size = 0;
        for &r in rows {
            let Some(literals) = &self.literals[r] else {
                continue;
            };
            let row_size = literals.iter().map(|l| l.len() + 32).sum::<usize>() + 16;
            match pieces.last_mut() {
                Some(piece) if size + row_size <= self.max_statement => piece.push(r),
                _ => {
                    pieces.push(vec![r]);
                    size = 0;
                }
            }
            size += row_size;
        }
        pieces
    }

    fn rows_of(&self, rows: &[usize]) -> Vec<&[String]> {
        rows.iter()
            .filter_map(|&r| self.literals[r].as_deref())
            .collect()
    }

    /// Mark the rows that exist, for upsert's created/updated and update's
    /// rejections.
    fn find_existing(&mut self) -> Result<(), PluginError> {
        let all: Vec<usize> = (0..self.batch.rows.len()).collect();
        for piece in self.pieces(&all) {
            let rows: Vec<(usize, &[String])> = piece
                .iter()
                .filter_map(|&r| self.literals[r].as_deref().map(|l| (r, l)))
                .collect();
            let sql = self.statement.existing_sql(&rows);
            for row in self.conn.query_rows(&sql)? {
                let position = row
                    .first()
                    .cloned()
                    .flatten()
                    .and_then(|p| p.parse::<usize>().ok())
                    .filter(|p| *p < self.existing.len());
                if let Some(p) = position {
                    self.existing[p] = true;
                }
            }
        }
        Ok(())
    }

    /// Write `rows`; when the database refuses them for a row's fault,
    /// each half again, down to the single rows it refuses. A failed
    /// statement is rolled back alone: the transaction goes on.
    fn write_rows(&mut self, rows: &[usize]) -> Result<(), PluginError> {
        let Some(sql) = self.statement.sql(&self.rows_of(rows)) else {
            return Ok(());
        };
        let error = match self.conn.execute_checked(&sql)? {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        if !is_row_level(&error) {
            return Err(error.into_plugin_error(&self.context()));
        }
        if let [row] = rows {
            self.results[*row] = Some(RowResult::Rejected(error.to_string()));
            return Ok(());
        }
        let (left, right) = rows.split_at(rows.len() / 2);
        self.write_rows(left)?;
        self.write_rows(right)
    }

    fn in_transaction(&mut self) -> Result<(), PluginError> {
        let keyed = matches!(self.statement.mode, WriteMode::Upsert | WriteMode::Update);
        if keyed {
            self.find_existing()?;
        }
        let mut todo: Vec<usize> = Vec::with_capacity(self.batch.rows.len());
        for r in 0..self.batch.rows.len() {
            if self.statement.mode == WriteMode::Update && !self.existing[r] {
                if self.results[r].is_none() {
                    self.results[r] = Some(self.statement.missing(&self.batch.rows[r]));
                }
            } else if self.results[r].is_none() {
                todo.push(r);
            }
        }
        for piece in self.pieces(&todo) {
            self.write_rows(&piece)?;
        }
        for r in todo {
            if self.results[r].is_none() {
                self.results[r] = Some(match self.statement.mode {
                    WriteMode::Upsert | WriteMode::Update if self.existing[r] => RowResult::Updated,
                    WriteMode::Delete => RowResult::Deleted,
                    _ => RowResult::Created,
                });
            }
        }
        Ok(())
    }

    fn write(mut self) -> Result<Vec<RowResult>, PluginError> {
        self.conn.execute("START TRANSACTION")?;
        if let Err(error) = self.in_transaction() {
            let _ = self.conn.execute("ROLLBACK");
            return Err(error);
        }
        self.conn.execute("COMMIT")?;
        let context = self.context();
        self.results
            .into_iter()
            .map(|r| {
                r.ok_or_else(|| {
                    PluginError::Permanent(format!("a row was left without an outcome ({context})"))
                })
            })
            .collect()
    }
}

impl Writer for MyWriter {
    fn write(&mut self, batch: Batch) -> Result<Vec<RowResult>, PluginError> {
        if batch.rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.connection()?;
        let statement = match Statement::new(&self.table, &self.target, &batch.columns) {
            Ok(statement) => statement,
            Err(error) => {
                self.conn = Some(conn);
                return Err(error);
            }
        };
        // A value MySQL cannot hold rejects its row before anything is sent.
        let mut results: Vec<Option<RowResult>> = vec![None; batch.rows.len()];
        let literals: Vec<Option<Vec<String>>> = batch
            .rows
            .iter()
            .zip(&mut results)
            .map(|(row, result)| {
                let literals: Result<Vec<String>, String> = (0..batch.columns.len())
                    .map(|i| literal(row.get(i).unwrap_or(&Value::Null)))
                    .collect();
                literals
                    .map_err(|why| *result = Some(RowResult::Rejected(why)))
                    .ok()
            })
            .collect();
        let outcome = Batcher {
            conn: &mut conn,
            statement: &statement,
            batch: &batch,
            literals,
            results,
            existing: vec![false; batch.rows.len()],
            max_statement: self.max_statement,
        }
        .write();
        match outcome {
            Ok(results) => {
                self.conn = Some(conn);
                Ok(results)
            }
            // The session may be mid-transaction or broken: start afresh.
            Err(error) => {
                conn.terminate();
                Err(error)
            }
        }
    }
}

impl Drop for MyWriter {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.terminate();
        }
    }
}
