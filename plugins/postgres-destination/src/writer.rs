//! Writing a batch: the statement of each mode, one transaction per batch,
//! and the isolation of the rows the database refuses.

use crate::catalog::{self, Column, Table};
use crate::encode;
use postgres::config::Config;
use postgres::conn::{Connection, TextRows};
use postgres::error::DbError;
use postgres::reader::quote_ident;
use postgres::types::Oid;
use sluice_sdk::{Batch, PluginError, RowResult, Value, WriteMode, WriteTarget, Writer};

/// The most parameters one statement may carry: Bind counts them in an
/// Int16.
const MAX_PARAMS: usize = i16::MAX as usize;

/// SQLSTATE classes that blame the data of a row rather than the
/// statement: cardinality (an upsert that meets its own row twice), data
/// exceptions (a value the column cannot hold), integrity constraints,
/// triggered data changes, WITH CHECK OPTION, and errors raised by a
/// trigger. A statement failing with one of these is retried row by row.
const ROW_LEVEL_CLASSES: [&str; 6] = ["21", "22", "23", "27", "44", "P0"];

fn is_row_level(error: &DbError) -> bool {
    ROW_LEVEL_CLASSES.contains(&error.code.get(..2).unwrap_or(""))
}

pub struct PgWriter {
    config: Config,
    /// `None` after a failure broke the session; the next write reconnects.
    conn: Option<Connection>,
    table: Table,
    target: WriteTarget,
}

impl PgWriter {
    /// Connect, look the target table up and check that it takes this mode.
    pub fn open(config: Config, target: WriteTarget) -> Result<PgWriter, PluginError> {
        let mut conn = Connection::connect(&config)?;
        let found = catalog::tables(&mut conn, Some(&target.object));
        let table = match found {
            Ok(mut tables) if !tables.is_empty() => tables.remove(0),
            Ok(_) => {
                conn.terminate();
                return Err(PluginError::Permanent(format!(
                    "`{}` is not a table user `{}` may insert into, update or delete from on {}",
                    target.object,
                    config.user,
                    config.target()
                )));
            }
            Err(error) => {
                conn.terminate();
                return Err(error);
            }
        };
        if let Err(error) = check_target(&table, &target) {
            conn.terminate();
            return Err(error);
        }
        Ok(PgWriter {
            config,
            conn: Some(conn),
            table,
            target,
        })
    }

    fn connection(&mut self) -> Result<Connection, PluginError> {
        match self.conn.take() {
            Some(conn) => Ok(conn),
            None => Connection::connect(&self.config),
        }
    }
}

/// The mode must be one the table's privileges and keys allow, and a
/// keyed mode's identifier a column that identifies rows.
fn check_target(table: &Table, target: &WriteTarget) -> Result<(), PluginError> {
    if !table.modes.contains(&target.mode) {
        return Err(PluginError::Permanent(format!(
            "`{}` does not take {} writes (it takes: {}); upsert, update and delete need a \
             column with a unique index of its own and the SELECT privilege",
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
    if target.mode == WriteMode::Append || target.mode == WriteMode::Insert {
        return Ok(());
    }
    match table.column(&target.identifier) {
        Some(c) if c.field.identifier => Ok(()),
        Some(_) => Err(PluginError::Permanent(format!(
            "column `{}` of `{}` cannot identify rows: it is not alone the key of a unique index",
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

/// The statement of one mode for a batch's columns.
struct Statement<'t> {
    mode: WriteMode,
    table: &'t Table,
    /// The batch's columns, in its order.
    columns: Vec<&'t Column>,
    /// The identifier's position among `columns`, for keyed modes.
    id: Option<usize>,
}

impl<'t> Statement<'t> {
    fn new(table: &'t Table, target: &WriteTarget, names: &[String]) -> Result<Self, PluginError> {
        let columns = names
            .iter()
            .map(|name| {
                table.column(name).ok_or_else(|| {
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
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(PluginError::Permanent(format!(
                    "the batch has column `{name}` twice"
                )));
            }
        }
        let keyed = matches!(
            target.mode,
            WriteMode::Upsert | WriteMode::Update | WriteMode::Delete
        );
        let id = if keyed {
            Some(
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
            )
        } else {
            None
        };
        if names.is_empty() {
            return Err(PluginError::Permanent("the batch has no columns".into()));
        }
        Ok(Statement {
            mode: target.mode,
            table,
            columns,
            id,
        })
    }

    /// Parameters per row: deletes send only the identifier.
    fn width(&self) -> usize {
        match self.mode {
            WriteMode::Delete => 1,
            _ => self.columns.len(),
        }
    }

    /// The parameters' types, for `rows` rows.
    fn types(&self, rows: usize) -> Vec<Oid> {
        let row: Vec<Oid> = match (self.mode, self.id) {
            (WriteMode::Delete, Some(id)) => vec![self.columns[id].oid],
            _ => self.columns.iter().map(|c| c.oid).collect(),
        };
        row.iter().copied().cycle().take(row.len() * rows).collect()
    }

    /// One row's parameters.
    fn params(&self, row: &[Value]) -> Vec<Option<String>> {
        match (self.mode, self.id) {
            (WriteMode::Delete, Some(id)) => vec![row.get(id).and_then(encode::param)],
            _ => (0..self.columns.len())
                .map(|i| row.get(i).and_then(encode::param))
                .collect(),
        }
    }

    fn id_name(&self) -> String {
        quote_ident(&self.columns[self.id.unwrap_or(0)].name)
    }

    /// The column list, quoted.
    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `(0, $1, $2), (1, $3, $4)`: each row's position, then its parameters.
    fn values(&self, rows: usize, numbered: bool) -> String {
        let width = self.width();
        let mut sql = String::with_capacity(rows * width * 6);
        for r in 0..rows {
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            if numbered {
                sql.push_str(&format!("{r}, "));
            }
            let params: Vec<String> = (1..=width).map(|p| format!("${}", r * width + p)).collect();
            sql.push_str(&params.join(", "));
            sql.push(')');
        }
        sql
    }

    /// `SET a = v.a, b = v.b` over the non-identifier columns (the
    /// identifier alone when there is nothing else, so the row is still
    /// matched and reported).
    fn assignments(&self, from: &str) -> String {
        let id = self.id.unwrap_or(usize::MAX);
        let mut set: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != id)
            .map(|(_, c)| format!("{0} = {from}.{0}", quote_ident(&c.name)))
            .collect();
        if set.is_empty() {
            set.push(format!("{0} = {from}.{0}", self.id_name()));
        }
        set.join(", ")
    }

    fn sql(&self, rows: usize) -> String {
        let table = &self.table.sql;
        let columns = self.column_list();
        match self.mode {
            WriteMode::Insert | WriteMode::Append => {
                format!("INSERT INTO {table} ({columns}) VALUES {}", self.values(rows, false))
            }
            // Rows are matched back to their position through the
            // identifier, compared by the column type's own equality.
            // `xmax = 0` holds for a row this statement inserted.
            WriteMode::Upsert => format!(
                "WITH v (\"sluice ord\", {columns}) AS (VALUES {values}), \
                 w AS (INSERT INTO {table} ({columns}) SELECT {columns} FROM v ORDER BY \"sluice ord\" \
                 ON CONFLICT ({id}) DO UPDATE SET {set} \
                 RETURNING {id} AS \"sluice id\", (xmax = 0) AS \"sluice created\") \
                 SELECT v.\"sluice ord\", w.\"sluice created\" FROM v JOIN w ON w.\"sluice id\" = v.{id}",
                values = self.values(rows, true),
                id = self.id_name(),
                set = self.assignments("EXCLUDED"),
            ),
            WriteMode::Update => format!(
                "UPDATE {table} AS \"sluice t\" SET {set} FROM (VALUES {values}) \
                 AS v (\"sluice ord\", {columns}) WHERE \"sluice t\".{id} = v.{id} \
                 RETURNING v.\"sluice ord\"",
                set = self.assignments("v"),
                values = self.values(rows, true),
                id = self.id_name(),
            ),
            WriteMode::Delete => {
                let params: Vec<String> = (1..=rows).map(|p| format!("${p}")).collect();
                format!(
                    "DELETE FROM {table} WHERE {} IN ({})",
                    self.id_name(),
                    params.join(", ")
                )
            }
        }
    }

    /// The results of `rows` (positions in `batch`) from what the
    /// statement returned.
    fn outcomes(
        &self,
        batch: &Batch,
        rows: &[usize],
        returned: TextRows,
    ) -> Result<Vec<RowResult>, PluginError> {
        match self.mode {
            WriteMode::Insert | WriteMode::Append => Ok(vec![RowResult::Created; rows.len()]),
            // A row that is no longer there is as deleted as can be.
            WriteMode::Delete => Ok(vec![RowResult::Deleted; rows.len()]),
            WriteMode::Upsert | WriteMode::Update => {
                let mut results: Vec<Option<RowResult>> = vec![None; rows.len()];
                for row in returned {
                    let position = row
                        .first()
                        .cloned()
                        .flatten()
                        .and_then(|p| p.parse::<usize>().ok())
                        .filter(|p| *p < rows.len())
                        .ok_or_else(|| {
                            PluginError::Permanent(format!(
                                "unexpected row {row:?} returned by a write to `{}`",
                                self.table.name
                            ))
                        })?;
                    let created = row.get(1).cloned().flatten().as_deref() == Some("t");
                    results[position] = Some(if created {
                        RowResult::Created
                    } else {
                        RowResult::Updated
                    });
                }
                Ok(results
                    .into_iter()
                    .zip(rows)
                    .map(|(result, &r)| result.unwrap_or_else(|| self.missing(&batch.rows[r])))
                    .collect())
            }
        }
    }

    /// A row the statement did not touch: update found no row with its
    /// identifier; an upsert's row was skipped (by a trigger).
    fn missing(&self, row: &[Value]) -> RowResult {
        let id = self.id.unwrap_or(0);
        let mut value = String::new();
        match row.get(id) {
            Some(Value::Null) | None => value.push_str("NULL"),
            Some(v) => v.write_text(&mut value),
        };
        RowResult::Rejected(match self.mode {
            WriteMode::Update => format!(
                "no row of `{}` has `{}` = {value}",
                self.table.name, self.columns[id].name
            ),
            _ => format!(
                "the row with `{}` = {value} was not written to `{}` (a trigger skipped it)",
                self.columns[id].name, self.table.name
            ),
        })
    }
}

/// One batch's work on one connection.
struct Batcher<'a> {
    conn: &'a mut Connection,
    statement: &'a Statement<'a>,
    batch: &'a Batch,
    params: &'a [Vec<Option<String>>],
    results: Vec<Option<RowResult>>,
}

impl Batcher<'_> {
    /// Run the statement over `rows`; a server error is returned as is.
    fn run(&mut self, rows: &[usize]) -> Result<Result<Vec<RowResult>, DbError>, PluginError> {
        let sql = self.statement.sql(rows.len());
        let types = self.statement.types(rows.len());
        let params: Vec<Option<&str>> = rows
            .iter()
            .flat_map(|&r| self.params[r].iter().map(|p| p.as_deref()))
            .collect();
        match self.conn.query_params(&sql, &types, &params)? {
            Ok(returned) => Ok(Ok(self.statement.outcomes(self.batch, rows, returned)?)),
            Err(error) => Ok(Err(error)),
        }
    }

    fn record(&mut self, rows: &[usize], outcomes: Vec<RowResult>) {
        for (&r, outcome) in rows.iter().zip(outcomes) {
            self.results[r] = Some(outcome);
        }
    }

    /// The batch in pieces the protocol allows, each one statement.
    fn pieces(&self) -> Vec<Vec<usize>> {
        let per_statement = (MAX_PARAMS / self.statement.width()).max(1);
        (0..self.batch.rows.len())
            .collect::<Vec<_>>()
            .chunks(per_statement)
            .map(<[usize]>::to_vec)
            .collect()
    }

    /// Every piece in the open transaction. The first row-level error
    /// stops it and is returned: the transaction is then aborted.
    fn all_pieces(&mut self) -> Result<Result<(), DbError>, PluginError> {
        for piece in self.pieces() {
            match self.run(&piece)? {
                Ok(outcomes) => self.record(&piece, outcomes),
                Err(error) => return Ok(Err(error)),
            }
        }
        Ok(Ok(()))
    }

    /// `rows` under a savepoint; when the database refuses them for a
    /// row's fault, each half again, down to the single rows it refuses.
    fn isolate(&mut self, rows: &[usize]) -> Result<(), PluginError> {
        self.conn.simple_query("SAVEPOINT sluice_rows")?;
        let error = match self.run(rows)? {
            Ok(outcomes) => {
                self.conn.simple_query("RELEASE SAVEPOINT sluice_rows")?;
                self.record(rows, outcomes);
                return Ok(());
            }
            Err(error) => error,
        };
        self.conn
            .simple_query("ROLLBACK TO SAVEPOINT sluice_rows; RELEASE SAVEPOINT sluice_rows")?;
        if !is_row_level(&error) {
            return Err(error.into_plugin_error(&self.context()));
        }
        if let [row] = rows {
            self.results[*row] = Some(RowResult::Rejected(error.to_string()));
            return Ok(());
        }
        let (left, right) = rows.split_at(rows.len() / 2);
        self.isolate(left)?;
        self.isolate(right)
    }

    fn context(&self) -> String {
        format!(
            "{} of {} row(s) into `{}`",
            mode_name(self.statement.mode),
            self.batch.rows.len(),
            self.statement.table.name
        )
    }

    /// The whole batch in one transaction; when a row's data fails it,
    /// again in a new transaction with the refused rows isolated.
    fn write(mut self) -> Result<Vec<RowResult>, PluginError> {
        self.conn.simple_query("BEGIN")?;
        match self.all_pieces()? {
            Ok(()) => {}
            Err(error) if is_row_level(&error) => {
                self.conn.simple_query("ROLLBACK")?;
                self.results.iter_mut().for_each(|r| *r = None);
                self.conn.simple_query("BEGIN")?;
                for piece in self.pieces() {
                    if let Err(error) = self.isolate(&piece) {
                        let _ = self.conn.simple_query("ROLLBACK");
                        return Err(error);
                    }
                }
            }
            Err(error) => {
                let _ = self.conn.simple_query("ROLLBACK");
                return Err(error.into_plugin_error(&self.context()));
            }
        }
        self.conn.simple_query("COMMIT")?;
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

impl Writer for PgWriter {
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
        let params: Vec<Vec<Option<String>>> =
            batch.rows.iter().map(|row| statement.params(row)).collect();
        let results = Batcher {
            conn: &mut conn,
            statement: &statement,
            batch: &batch,
            params: &params,
            results: vec![None; batch.rows.len()],
        }
        .write();
        match results {
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

impl Drop for PgWriter {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.terminate();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::{Field, FieldType};

    fn table() -> Table {
        let column = |name: &str, oid: Oid, identifier: bool| Column {
            name: name.into(),
            oid,
            field: Field {
                name: name.into(),
                type_: FieldType::Integer,
                nullable: !identifier,
                required: false,
                identifier,
            },
        };
        Table {
            name: "public.t".into(),
            sql: r#""public"."t""#.into(),
            columns: vec![column("id", 23, true), column("na\"me", 25, false)],
            modes: vec![WriteMode::Upsert, WriteMode::Update, WriteMode::Delete],
        }
    }

    fn target(mode: WriteMode) -> WriteTarget {
        WriteTarget {
            object: "public.t".into(),
            mode,
            identifier: "id".into(),
        }
    }

    #[test]
    fn statements_quote_every_name_and_number_every_parameter() {
        let table = table();
        let names = ["na\"me".to_owned(), "id".to_owned()];
        let upsert = Statement::new(&table, &target(WriteMode::Upsert), &names).unwrap();
        assert_eq!(
            upsert.sql(2),
            "WITH v (\"sluice ord\", \"na\"\"me\", \"id\") AS (VALUES (0, $1, $2), (1, $3, $4)), \
             w AS (INSERT INTO \"public\".\"t\" (\"na\"\"me\", \"id\") SELECT \"na\"\"me\", \"id\" FROM v \
             ORDER BY \"sluice ord\" ON CONFLICT (\"id\") DO UPDATE SET \"na\"\"me\" = EXCLUDED.\"na\"\"me\" \
             RETURNING \"id\" AS \"sluice id\", (xmax = 0) AS \"sluice created\") \
             SELECT v.\"sluice ord\", w.\"sluice created\" FROM v JOIN w ON w.\"sluice id\" = v.\"id\""
        );
        assert_eq!(upsert.types(2), [25, 23, 25, 23]);
        let delete = Statement::new(&table, &target(WriteMode::Delete), &["id".into()]).unwrap();
        assert_eq!(
            delete.sql(3),
            "DELETE FROM \"public\".\"t\" WHERE \"id\" IN ($1, $2, $3)"
        );
        let update = Statement::new(&table, &target(WriteMode::Update), &["id".into()]).unwrap();
        assert!(
            update.sql(1).contains("SET \"id\" = v.\"id\""),
            "{}",
            update.sql(1)
        );
    }

    #[test]
    fn batches_without_the_identifier_or_with_unknown_columns_fail_whole() {
        let table = table();
        let err = |mode, names: &[&str]| {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            match Statement::new(&table, &target(mode), &names) {
                Err(PluginError::Permanent(m)) => m,
                other => panic!("{:?}", other.map(|s| s.sql(1))),
            }
        };
        assert!(err(WriteMode::Upsert, &["na\"me"]).contains("no identifier column `id`"));
        assert!(err(WriteMode::Insert, &["nope"])
            .contains("`nope` is not a writable column of `public.t`"));
        assert!(err(WriteMode::Insert, &["id", "id"]).contains("column `id` twice"));
    }

    #[test]
    fn only_data_errors_are_isolated() {
        let error = |code: &str| DbError {
            code: code.into(),
            ..Default::default()
        };
        for code in ["23505", "23502", "22P02", "21000", "P0001"] {
            assert!(is_row_level(&error(code)), "{code}");
        }
        for code in ["42P01", "42501", "40001", "08006", ""] {
            assert!(!is_row_level(&error(code)), "{code}");
        }
    }
}
