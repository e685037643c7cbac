//! Databricks SQL to PostgreSQL: parsed with `sqlparser`'s Databricks dialect,
//! the tree rewritten, and printed back.
//!
//! - Names are case-insensitive and stored lowercase, as in Unity Catalog;
//!   `` `quoted` `` identifiers keep their text. A table `c.s.t` lives in the
//!   PostgreSQL schema `"c.s"`; missing parts come from the request's `catalog`
//!   and `schema`. `c.information_schema.columns|tables` read catalog views.
//! - Types: TINYINT/BYTE is the domain `db_byte`, SMALLINT/SHORT `smallint`,
//!   INT `integer`, BIGINT/LONG `bigint`, FLOAT `real`, DOUBLE `double
//!   precision`, DECIMAL(p,s) `numeric(p,s)`, STRING `text`, BINARY `bytea`,
//!   TIMESTAMP `timestamptz`, TIMESTAMP_NTZ `timestamp`, ARRAY/MAP/STRUCT the
//!   jsonb domains `db_array`/`db_map`/`db_struct` and INTERVAL `interval`; the
//!   declared text of the last two kinds (`ARRAY<INT>`) is kept in a column
//!   comment, so the manifest's `type_text` can repeat it.
//! - Named parameter markers `:name` become typed literals.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use sqlparser::ast::{
    DataType, Expr, Ident, ObjectName, ObjectNamePart, Query, SelectItem, SetExpr, Statement,
    TableAlias, TableFactor, Value, VisitMut, VisitorMut,
};
use sqlparser::dialect::{DatabricksDialect, PostgreSqlDialect};
use sqlparser::parser::Parser;

use super::SqlFailure;

/// The PostgreSQL schema holding the information_schema views.
pub const META_SCHEMA: &str = "db_meta";
/// Prefix of the column comment that keeps a declared complex or interval type.
pub const TYPE_COMMENT: &str = "databricks_type:";

/// One `parameters[]` entry: `{"name": "d", "value": "2020-01-01", "type": "DATE"}`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Parameter {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// Where unqualified names resolve, and the parameter values.
#[derive(Debug, Clone)]
pub struct Context {
    pub catalog: String,
    pub schema: String,
    pub parameters: HashMap<String, Parameter>,
}

/// What a translated statement is, which decides how it runs and answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Returns rows.
    Query,
    /// INSERT (`num_affected_rows`, `num_inserted_rows`).
    Insert,
    /// UPDATE, DELETE, MERGE (`num_affected_rows`).
    Modify,
    /// Anything else: no result.
    Other,
}

/// One statement ready for PostgreSQL (`sql` may hold several statements,
/// e.g. CREATE TABLE and its type comments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    pub sql: String,
    pub kind: Kind,
}

/// Translates `text`, which must hold exactly one statement.
pub fn translate(text: &str, ctx: &Context) -> Result<Translated, SqlFailure> {
    // sqlparser's Databricks dialect reads neither `MAP<K, V>` nor
    // `STRUCT<a: INT>`: they are swapped for placeholder type names.
    let (text, maps) = hide_map_types(text);
    let mut statements = Parser::parse_sql(&DatabricksDialect {}, &text).map_err(syntax_error)?;
    let statement = match (statements.pop(), statements.is_empty()) {
        (Some(statement), true) => statement,
        (None, _) => return Err(parse_error("the statement is empty")),
        (Some(_), false) => {
            return Err(parse_error(
                "a request may hold only one statement; send each statement on its own",
            ))
        }
    };
    translate_one(statement, ctx, &maps)
}

/// The PostgreSQL type names [`pg_type`] produces.
const PG_TYPES: [&str; 17] = [
    "db_byte",
    "smallint",
    "integer",
    "bigint",
    "real",
    "double precision",
    "numeric",
    "text",
    "boolean",
    "bytea",
    "date",
    "timestamptz",
    "timestamp",
    "db_array",
    "db_map",
    "db_struct",
    "interval",
];

/// Type names standing for the `n`th hidden `MAP<…>` / `STRUCT<…>`.
const MAP_PLACEHOLDER: &str = "DBX_MAP_";
const STRUCT_PLACEHOLDER: &str = "DBX_STRUCT_";
const INTERVAL_PLACEHOLDER: &str = "DBX_INTERVAL_";
const INTERVAL_UNITS: [&str; 6] = ["YEAR", "MONTH", "DAY", "HOUR", "MINUTE", "SECOND"];

/// `MAP<K, V>` and `STRUCT<…>` types (outside quotes) replaced by
/// `DBX_MAP_<n>` / `DBX_STRUCT_<n>`, and their texts (uppercase, spaces after
/// commas and colons as `type_text` shows them), in order.
fn hide_map_types(text: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len());
    let mut hidden = Vec::new();
    let mut quote: Option<char> = None;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let starts = |word: &str| {
            rest.len() >= word.len()
                && rest.is_char_boundary(word.len())
                && rest[..word.len()].eq_ignore_ascii_case(word)
        };
        let kind = match () {
            _ if quote.is_some() || out.ends_with(|p: char| p.is_alphanumeric() || p == '_') => {
                None
            }
            _ if starts("MAP<") => Some(MAP_PLACEHOLDER),
            _ if starts("STRUCT<") => Some(STRUCT_PLACEHOLDER),
            _ => None,
        };
        let interval = match () {
            _ if quote.is_some() || out.ends_with(|p: char| p.is_alphanumeric() || p == '_') => {
                None
            }
            _ if starts("INTERVAL ") => interval_type(rest),
            _ => None,
        };
        if let Some(end) = interval {
            out.push_str(&format!("{INTERVAL_PLACEHOLDER}{}", hidden.len()));
            hidden.push(
                rest[..end]
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .to_uppercase(),
            );
            rest = &rest[end..];
            continue;
        }
        if let (Some(kind), Some(end)) = (kind, closing_bracket(rest)) {
            out.push_str(&format!("{kind}{}", hidden.len()));
            hidden.push(rest[..end].to_uppercase());
            rest = &rest[end..];
            continue;
        }
        match (quote, c) {
            (None, '\'' | '"' | '`') => quote = Some(c),
            (Some(q), _) if q == c => quote = None,
            _ => {}
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    (out, hidden)
}

/// The end (exclusive) of an interval type (`INTERVAL DAY TO SECOND`,
/// `INTERVAL YEAR`) at the start of `text`; `None` for an interval literal
/// (`INTERVAL '1' DAY`).
fn interval_type(text: &str) -> Option<usize> {
    let words: Vec<(usize, &str)> = text
        .split_whitespace()
        .take(4)
        .map(|w| (w.as_ptr() as usize - text.as_ptr() as usize, w))
        .collect();
    let unit = |i: usize| {
        words.get(i).and_then(|&(at, w)| {
            let bare = w.trim_end_matches([',', ')']);
            INTERVAL_UNITS
                .iter()
                .any(|u| u.eq_ignore_ascii_case(bare))
                .then_some(at + bare.len())
        })
    };
    let first = unit(1)?;
    match words.get(2) {
        Some((_, to)) if to.eq_ignore_ascii_case("TO") && !words[1].1.ends_with([',', ')']) => {
            unit(3).or(Some(first))
        }
        _ => Some(first),
    }
}

/// The end (exclusive) of the `<…>` that starts `text`'s type.
fn closing_bracket(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '<' => depth += 1,
            '>' if depth == 1 => return Some(i + 1),
            '>' => depth = depth.checked_sub(1)?,
            _ => {}
        }
    }
    None
}

/// A declared type's text with the hidden types put back.
fn restore_hidden(declared: &str, hidden: &[String]) -> String {
    let mut text = declared.to_owned();
    for (n, original) in hidden.iter().enumerate().rev() {
        for kind in [MAP_PLACEHOLDER, STRUCT_PLACEHOLDER, INTERVAL_PLACEHOLDER] {
            text = text.replace(&format!("{kind}{n}"), original);
        }
    }
    text
}

fn syntax_error(err: sqlparser::parser::ParserError) -> SqlFailure {
    let detail = err.to_string();
    parse_error(detail.strip_prefix("sql parser error: ").unwrap_or(&detail))
}

fn parse_error(detail: &str) -> SqlFailure {
    SqlFailure::bad_request(
        "42601",
        format!("[PARSE_SYNTAX_ERROR] Syntax error: {detail}. SQLSTATE: 42601"),
    )
}

fn translate_one(
    mut statement: Statement,
    ctx: &Context,
    maps: &[String],
) -> Result<Translated, SqlFailure> {
    let mut extra = String::new();
    let mut prefix = String::new();
    let kind = match &mut statement {
        Statement::Query(_) => Kind::Query,
        Statement::Insert(_) => Kind::Insert,
        Statement::Update { .. } | Statement::Delete(_) | Statement::Merge { .. } => Kind::Modify,
        Statement::CreateSchema {
            schema_name,
            if_not_exists,
            ..
        } => {
            let schema = schema_ident(&schema_name.to_string(), ctx);
            let guard = if *if_not_exists { "IF NOT EXISTS " } else { "" };
            return Ok(Translated {
                sql: format!("CREATE SCHEMA {guard}{schema}"),
                kind: Kind::Other,
            });
        }
        Statement::Drop {
            object_type: sqlparser::ast::ObjectType::Schema,
            if_exists,
            names,
            ..
        } => {
            let guard = if *if_exists { "IF EXISTS " } else { "" };
            let schemas: Vec<String> = names
                .iter()
                .map(|n| schema_ident(&n.to_string(), ctx).to_string())
                .collect();
            return Ok(Translated {
                sql: format!("DROP SCHEMA {guard}{} CASCADE", schemas.join(", ")),
                kind: Kind::Other,
            });
        }
        Statement::CreateTable(create) => {
            let mut table = create.name.clone();
            qualify(&mut table, ctx)?;
            if create.or_replace {
                create.or_replace = false;
                prefix = format!("DROP TABLE IF EXISTS {table}; ");
            }
            for column in &mut create.columns {
                fold(&mut column.name);
                let declared = restore_hidden(&column.data_type.to_string().to_uppercase(), maps);
                column.data_type = pg_type(&column.data_type)?;
                if needs_type_comment(&declared) {
                    extra.push_str(&format!(
                        "; COMMENT ON COLUMN {table}.{} IS {}",
                        column.name,
                        literal(&format!("{TYPE_COMMENT}{declared}"))
                    ));
                }
            }
            Kind::Other
        }
        _ => Kind::Other,
    };
    let mut normalizer = Normalizer {
        ctx,
        ctes: HashSet::new(),
    };
    if let ControlFlow::Break(err) = statement.visit(&mut normalizer) {
        return Err(err);
    }
    Ok(Translated {
        sql: format!("{prefix}{statement}{extra}"),
        kind,
    })
}

fn needs_type_comment(declared: &str) -> bool {
    ["ARRAY", "MAP", "STRUCT", "INTERVAL"]
        .iter()
        .any(|kind| declared.starts_with(kind))
}

/// Databricks' rule for an identifier: unquoted ones fold to lowercase; all
/// are printed double-quoted for PostgreSQL.
fn fold(ident: &mut Ident) {
    if ident.quote_style.is_none() {
        ident.value = ident.value.to_lowercase();
    }
    ident.quote_style = Some('"');
}

fn parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .filter_map(|part| match part {
            ObjectNamePart::Identifier(ident) => Some(ident.value.to_lowercase()),
            ObjectNamePart::Function(_) => None,
        })
        .collect()
}

/// `s` or `c.s` as the PostgreSQL schema identifier `"c.s"`.
fn schema_ident(name: &str, ctx: &Context) -> Ident {
    let cleaned: Vec<String> = name
        .split('.')
        .map(|p| p.trim_matches('`').trim_matches('"').to_lowercase())
        .collect();
    let full = match cleaned.as_slice() {
        [schema] => format!("{}.{schema}", ctx.catalog),
        _ => cleaned.join("."),
    };
    Ident::with_quote('"', full)
}

/// `t`, `s.t` or `c.s.t` as `"c.s"."t"`.
fn qualify(name: &mut ObjectName, ctx: &Context) -> Result<(), SqlFailure> {
    let (catalog, schema, table) = match parts(name).as_slice() {
        [table] => (ctx.catalog.clone(), ctx.schema.clone(), table.clone()),
        [schema, table] => (ctx.catalog.clone(), schema.clone(), table.clone()),
        [catalog, schema, table] => (catalog.clone(), schema.clone(), table.clone()),
        _ => {
            return Err(SqlFailure::bad_request(
                "42601",
                format!("[INVALID_IDENTIFIER] The name {name} has more than three parts (catalog.schema.table). SQLSTATE: 42601"),
            ))
        }
    };
    *name = ObjectName::from(vec![
        Ident::with_quote('"', format!("{catalog}.{schema}")),
        Ident::with_quote('"', table),
    ]);
    Ok(())
}

/// The PostgreSQL type standing for a Databricks type. A type this function
/// made (a bound parameter's cast, visited again) is kept.
pub fn pg_type(data_type: &DataType) -> Result<DataType, SqlFailure> {
    if let DataType::Custom(name, _) = data_type {
        if PG_TYPES.contains(&name.to_string().split('(').next().unwrap_or_default()) {
            return Ok(data_type.clone());
        }
    }
    let text = data_type.to_string().to_uppercase();
    let base = text
        .split(['(', '<', ' '])
        .next()
        .unwrap_or_default()
        .trim();
    let args = text
        .split_once('(')
        .map(|(_, rest)| rest.trim_end_matches(')').replace(' ', ""));
    let mapped = match base {
        "TINYINT" | "BYTE" => "db_byte".to_owned(),
        "SMALLINT" | "SHORT" => "smallint".into(),
        "INT" | "INTEGER" => "integer".into(),
        "BIGINT" | "LONG" => "bigint".into(),
        "FLOAT" | "REAL" => "real".into(),
        "DOUBLE" => "double precision".into(),
        "DECIMAL" | "DEC" | "NUMERIC" => match args.as_deref() {
            None => "numeric(10,0)".into(),
            Some(args) if args.contains(',') => format!("numeric({args})"),
            Some(precision) => format!("numeric({precision},0)"),
        },
        "STRING" | "VARCHAR" | "CHAR" | "TEXT" => "text".into(),
        "BOOLEAN" => "boolean".into(),
        "BINARY" => "bytea".into(),
        "DATE" => "date".into(),
        "TIMESTAMP" | "TIMESTAMP_LTZ" => "timestamptz".into(),
        "TIMESTAMP_NTZ" => "timestamp".into(),
        "ARRAY" => "db_array".into(),
        "MAP" => "db_map".into(),
        hidden if hidden.starts_with(MAP_PLACEHOLDER) => "db_map".into(),
        hidden if hidden.starts_with(STRUCT_PLACEHOLDER) => "db_struct".into(),
        hidden if hidden.starts_with(INTERVAL_PLACEHOLDER) => "interval".into(),
        "STRUCT" => "db_struct".into(),
        "INTERVAL" => "interval".into(),
        other => {
            return Err(SqlFailure::bad_request(
                "0A000",
                format!("[UNSUPPORTED_DATATYPE] Unsupported data type \"{other}\" (not emulated). SQLSTATE: 0A000"),
            ))
        }
    };
    Ok(DataType::Custom(
        ObjectName::from(vec![Ident::new(mapped)]),
        Vec::new(),
    ))
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn parse_expr(text: &str) -> Result<Expr, SqlFailure> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .map_err(syntax_error)
}

/// Rewrites names, types and parameter markers in place.
struct Normalizer<'a> {
    ctx: &'a Context,
    ctes: HashSet<String>,
}

impl Normalizer<'_> {
    /// A `:name` marker as a literal of the parameter's type (NULL when the
    /// parameter has no value; STRING when it has no type).
    fn bind(&self, marker: &str) -> Result<Expr, SqlFailure> {
        let name = marker.trim_start_matches(':');
        let parameter = self.ctx.parameters.get(name).ok_or_else(|| {
            SqlFailure::bad_request(
                "42P02",
                format!("[UNBOUND_SQL_PARAMETER] Found the unbound parameter: {name}. Please, fix `args` and provide a mapping of the parameter to a SQL literal. SQLSTATE: 42P02"),
            )
        })?;
        let Some(value) = &parameter.value else {
            return parse_expr("NULL");
        };
        let kind = parameter.kind.as_deref().unwrap_or("STRING");
        let data_type = Parser::new(&DatabricksDialect {})
            .try_with_sql(kind)
            .and_then(|mut p| p.parse_data_type())
            .map_err(syntax_error)?;
        // The cast's type is set as the node `pg_type` makes, so that the
        // visitor, reaching it next, keeps it.
        let mut cast = parse_expr(&format!("CAST({} AS text)", literal(value)))?;
        if let Expr::Cast {
            data_type: slot, ..
        } = &mut cast
        {
            *slot = pg_type(&data_type)?;
        }
        Ok(cast)
    }

    /// `c.information_schema.v` (or `information_schema.v`) as a subquery over
    /// the catalog views filtered to catalog `c`.
    fn information_schema(&self, name: &ObjectName) -> Option<Result<Query, SqlFailure>> {
        let (catalog, view) = match parts(name).as_slice() {
            [schema, view] if schema == "information_schema" => {
                (self.ctx.catalog.clone(), view.clone())
            }
            [catalog, schema, view] if schema == "information_schema" => {
                (catalog.clone(), view.clone())
            }
            _ => return None,
        };
        if view != "columns" && view != "tables" {
            return Some(Err(table_not_found(&format!(
                "{catalog}.information_schema.{view}"
            ))));
        }
        let sql = format!(
            "SELECT * FROM {META_SCHEMA}.{view} WHERE table_catalog = {}",
            literal(&catalog)
        );
        Some(
            Parser::parse_sql(&PostgreSqlDialect {}, &sql)
                .map_err(syntax_error)
                .and_then(|mut parsed| match parsed.pop() {
                    Some(Statement::Query(query)) => Ok(*query),
                    _ => Err(parse_error("the information_schema view")),
                }),
        )
    }
}

pub fn table_not_found(name: &str) -> SqlFailure {
    SqlFailure::bad_request(
        "42P01",
        format!("[TABLE_OR_VIEW_NOT_FOUND] The table or view `{name}` cannot be found. Verify the spelling and correctness of the schema and catalog. SQLSTATE: 42P01"),
    )
}

impl VisitorMut for Normalizer<'_> {
    type Break = SqlFailure;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<SqlFailure> {
        if let Some(with) = &mut query.with {
            for cte in &mut with.cte_tables {
                fold(&mut cte.alias.name);
                self.ctes.insert(cte.alias.name.value.clone());
            }
        }
        fold_select_aliases(&mut query.body);
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<SqlFailure> {
        let TableFactor::Table {
            name, alias, args, ..
        } = factor
        else {
            if let TableFactor::Derived { alias, .. } = factor {
                fold_alias(alias);
            }
            return ControlFlow::Continue(());
        };
        fold_alias(alias);
        if let Some(args) = args {
            return match range(name, args) {
                Ok(subquery) => {
                    let alias = alias.take().unwrap_or_else(|| TableAlias {
                        name: Ident::with_quote('"', "range"),
                        columns: Vec::new(),
                    });
                    *factor = TableFactor::Derived {
                        lateral: false,
                        subquery: Box::new(subquery),
                        alias: Some(alias),
                    };
                    ControlFlow::Continue(())
                }
                Err(err) => ControlFlow::Break(err),
            };
        }
        match self.information_schema(name) {
            None => ControlFlow::Continue(()),
            Some(Err(err)) => ControlFlow::Break(err),
            Some(Ok(subquery)) => {
                let view = parts(name).pop().unwrap_or_default();
                let alias = alias.take().unwrap_or_else(|| TableAlias {
                    name: Ident::with_quote('"', view),
                    columns: Vec::new(),
                });
                *factor = TableFactor::Derived {
                    lateral: false,
                    subquery: Box::new(subquery),
                    alias: Some(alias),
                };
                ControlFlow::Continue(())
            }
        }
    }

    fn pre_visit_relation(&mut self, name: &mut ObjectName) -> ControlFlow<SqlFailure> {
        let names = parts(name);
        if names.first().is_some_and(|p| p == META_SCHEMA) {
            return ControlFlow::Continue(());
        }
        if let [only] = names.as_slice() {
            if self.ctes.contains(only) {
                *name = ObjectName::from(vec![Ident::with_quote('"', only.clone())]);
                return ControlFlow::Continue(());
            }
        }
        match qualify(name, self.ctx) {
            Ok(()) => ControlFlow::Continue(()),
            Err(err) => ControlFlow::Break(err),
        }
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<SqlFailure> {
        match expr {
            Expr::Identifier(ident) => fold(ident),
            Expr::CompoundIdentifier(idents) => idents.iter_mut().for_each(fold),
            Expr::Cast { data_type, .. } => match pg_type(data_type) {
                Ok(mapped) => *data_type = mapped,
                Err(err) => return ControlFlow::Break(err),
            },
            // `TIMESTAMP '…'` is an instant in Databricks, `timestamptz` here.
            Expr::TypedString(typed) => match pg_type(&typed.data_type) {
                Ok(mapped) => typed.data_type = mapped,
                Err(err) => return ControlFlow::Break(err),
            },
            Expr::Value(value) => {
                let replaced = match &value.value {
                    Value::Placeholder(marker) => Some(self.bind(marker)),
                    // X'00FF' is BINARY in Databricks, a bit string in PostgreSQL.
                    Value::HexStringLiteral(hex) => {
                        Some(parse_expr(&format!("decode({}, 'hex')", literal(hex))))
                    }
                    _ => None,
                };
                match replaced {
                    Some(Ok(bound)) => *expr = Expr::Nested(Box::new(bound)),
                    Some(Err(err)) => return ControlFlow::Break(err),
                    None => {}
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Databricks' table-valued `range(end)`, `range(start, end[, step])`: a
/// BIGINT column `id` from `start` (0) up to `end`, exclusive. Other table
/// functions are not emulated.
fn range(name: &ObjectName, args: &sqlparser::ast::TableFunctionArgs) -> Result<Query, SqlFailure> {
    let function = parts(name).join(".");
    if function != "range" {
        return Err(SqlFailure::bad_request(
            "42883",
            format!("[UNRESOLVED_ROUTINE] Cannot resolve routine `{function}` (table functions other than range are not emulated). SQLSTATE: 42883"),
        ));
    }
    let values: Vec<String> = args.args.iter().map(ToString::to_string).collect();
    let (start, end, step) = match values.as_slice() {
        [end] => ("0", end.as_str(), "1"),
        [start, end] => (start.as_str(), end.as_str(), "1"),
        [start, end, step] => (start.as_str(), end.as_str(), step.as_str()),
        _ => {
            return Err(SqlFailure::bad_request(
                "42605",
                "[WRONG_NUM_ARGS] range takes 1 to 3 arguments. SQLSTATE: 42605",
            ))
        }
    };
    let sql = format!(
        "SELECT generate_series(({start})::bigint, ({end})::bigint - 1, ({step})::bigint) AS id"
    );
    match Parser::parse_sql(&PostgreSqlDialect {}, &sql)
        .map_err(syntax_error)?
        .pop()
    {
        Some(Statement::Query(query)) => Ok(*query),
        _ => Err(parse_error("range")),
    }
}

/// Select-list aliases (`AS name`), which the expression visitor does not see.
fn fold_select_aliases(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            for item in &mut select.projection {
                if let SelectItem::ExprWithAlias { alias, .. } = item {
                    fold(alias);
                }
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            fold_select_aliases(left);
            fold_select_aliases(right);
        }
        _ => {}
    }
}

fn fold_alias(alias: &mut Option<TableAlias>) {
    if let Some(alias) = alias {
        fold(&mut alias.name);
        for column in &mut alias.columns {
            fold(&mut column.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context {
            catalog: "main".into(),
            schema: "default".into(),
            parameters: HashMap::new(),
        }
    }

    #[test]
    fn names_resolve_to_catalog_dot_schema() {
        let t = translate("SELECT Id, `Mixed` FROM sales.Orders o", &ctx()).unwrap();
        assert_eq!(t.kind, Kind::Query);
        assert_eq!(
            t.sql,
            r#"SELECT "id", "Mixed" FROM "main.sales"."orders" AS "o""#
        );
        let t = translate("WITH x AS (SELECT 1 AS a) SELECT * FROM x, c.s.t", &ctx()).unwrap();
        assert!(t.sql.contains(r#"FROM "x", "c.s"."t""#), "{}", t.sql);
    }

    #[test]
    fn create_table_maps_types_and_keeps_complex_type_text() {
        let t = translate(
            "CREATE OR REPLACE TABLE t (a TINYINT, b DECIMAL(38,10), c ARRAY<INT>, d TIMESTAMP_NTZ, m MAP<STRING, ARRAY<INT>>, s STRUCT<x: INT>)",
            &ctx(),
        )
        .unwrap();
        assert!(t.sql.contains(r#"COMMENT ON COLUMN "main.default"."t"."m" IS 'databricks_type:MAP<STRING, ARRAY<INT>>'"#), "{}", t.sql);
        assert!(t.sql.contains(r#""m" db_map, "s" db_struct"#), "{}", t.sql);
        let interval = translate(
            "CREATE TABLE i (a INTERVAL DAY TO SECOND, b INTERVAL YEAR) AS SELECT INTERVAL '1' DAY",
            &ctx(),
        );
        let interval = interval.map(|t| t.sql).unwrap_or_else(|e| e.message);
        assert!(
            interval.contains(r#""a" interval, "b" interval"#),
            "{interval}"
        );
        assert!(
            interval.contains("'databricks_type:INTERVAL DAY TO SECOND'"),
            "{interval}"
        );
        assert!(interval.contains("INTERVAL '1' DAY"), "{interval}");
        assert!(
            t.sql
                .ends_with(r#""s" IS 'databricks_type:STRUCT<X: INT>'"#),
            "{}",
            t.sql
        );
        let quoted = translate("SELECT 'MAP<x>' AS m", &ctx()).unwrap();
        assert!(quoted.sql.contains("'MAP<x>'"), "{}", quoted.sql);
        assert!(t.sql.starts_with(r#"DROP TABLE IF EXISTS "main.default"."t"; CREATE TABLE "main.default"."t" ("a" db_byte, "b" numeric(38,10), "c" db_array, "d" timestamp, "m" db_map"#), "{}", t.sql);
        assert!(
            t.sql.contains(
                r#"COMMENT ON COLUMN "main.default"."t"."c" IS 'databricks_type:ARRAY<INT>'"#
            ),
            "{}",
            t.sql
        );
    }

    #[test]
    fn parameters_become_typed_literals() {
        let mut ctx = ctx();
        ctx.parameters.insert(
            "d".into(),
            Parameter {
                name: "d".into(),
                value: Some("2020-01-01".into()),
                kind: Some("DATE".into()),
            },
        );
        ctx.parameters.insert(
            "at".into(),
            Parameter {
                name: "at".into(),
                value: Some("2000-01-01T00:00:00Z".into()),
                kind: Some("TIMESTAMP".into()),
            },
        );
        let t = translate("SELECT * FROM t WHERE at > :at", &ctx).unwrap();
        assert!(
            t.sql
                .ends_with(r#"WHERE "at" > (CAST('2000-01-01T00:00:00Z' AS timestamptz))"#),
            "{}",
            t.sql
        );
        let t = translate("SELECT * FROM t WHERE d = :d", &ctx).unwrap();
        assert!(
            t.sql
                .ends_with(r#"WHERE "d" = (CAST('2020-01-01' AS date))"#),
            "{}",
            t.sql
        );
        let err = translate("SELECT :missing", &ctx).unwrap_err();
        assert!(err.message.contains("UNBOUND_SQL_PARAMETER"), "{err:?}");
    }

    #[test]
    fn bad_sql_is_a_parse_error() {
        let err = translate("SELEC 1", &ctx()).unwrap_err();
        assert_eq!(err.sql_state, "42601");
        assert!(translate("SELECT 1; SELECT 2", &ctx()).is_err());
    }
}
