//! GoogleSQL to PostgreSQL: parsed with `sqlparser`'s BigQuery dialect, the
//! tree rewritten, and printed back.
//!
//! - A dataset is a PostgreSQL schema; `` `project.dataset.table` ``,
//!   `dataset.table` and (with a default dataset) `table` become
//!   `"dataset"."table"`: table names are case-sensitive, as in BigQuery.
//!   `dataset.INFORMATION_SCHEMA.COLUMNS` reads a view of the PostgreSQL catalog.
//! - Types: INT64 bigint, FLOAT64 double precision, NUMERIC numeric(38,9),
//!   BIGNUMERIC numeric(77,38), BOOL boolean, STRING text, BYTES bytea, DATE,
//!   DATETIME timestamp, TIME, TIMESTAMP timestamptz, JSON jsonb, ARRAY<T> T[],
//!   STRUCT<…> a composite type created on first use (`bq_struct_<hash>`).
//! - `[a, b]` is `ARRAY[a, b]`, `STRUCT(a, b)` is `ROW(a, b)`, backquoted
//!   identifiers are double-quoted.

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    ArrayElemTypeDef, DataType, ExactNumberInfo, Expr, Ident, ObjectName, ObjectNamePart, Query,
    Statement, StructField, TableAlias, TableFactor, TimezoneInfo, VisitMut, VisitorMut,
};
use sqlparser::dialect::{BigQueryDialect, PostgreSqlDialect};
use sqlparser::parser::Parser;

use super::BqError;

/// Where unqualified names resolve.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub project: String,
    pub default_dataset: Option<String>,
}

/// What a statement is, which decides how it runs and answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Query,
    Dml,
    Ddl,
}

/// A table a statement reads or writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRef {
    pub dataset: String,
    pub table: String,
}

/// One statement ready for PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// Statements that must run first (composite types for STRUCT columns).
    pub prelude: Vec<String>,
    pub sql: String,
    pub kind: Kind,
    /// Tables named, in order of appearance (not CTEs).
    pub tables: Vec<TableRef>,
}

/// Translates every statement of `text`.
pub fn translate(text: &str, ctx: &Context) -> Result<Vec<Translated>, BqError> {
    if text.trim().trim_matches(';').trim().is_empty() {
        return Err(BqError::invalid_query(
            "Syntax error: Unexpected end of script at [1:1]",
        ));
    }
    let statements = Parser::parse_sql(&BigQueryDialect {}, text).map_err(syntax_error)?;
    statements
        .into_iter()
        .map(|statement| translate_one(statement, ctx))
        .collect()
}

fn syntax_error(err: sqlparser::parser::ParserError) -> BqError {
    let detail = err.to_string();
    let detail = detail.strip_prefix("sql parser error: ").unwrap_or(&detail);
    // sqlparser says "at Line: 1, Column: 8"; BigQuery says "at [1:8]".
    let located = match detail.rsplit_once(" at Line: ") {
        Some((message, place)) => {
            let (line, column) = place.split_once(", Column: ").unwrap_or((place, "1"));
            format!("Syntax error: {message} at [{line}:{column}]")
        }
        None => format!("Syntax error: {detail}"),
    };
    BqError::invalid_query(located)
}

fn translate_one(mut statement: Statement, ctx: &Context) -> Result<Translated, BqError> {
    let mut normalizer = Normalizer::new(ctx);
    let kind = match &mut statement {
        Statement::Query(_) => Kind::Query,
        Statement::Insert(_) | Statement::Update { .. } | Statement::Delete(_) => Kind::Dml,
        Statement::Merge { .. } => Kind::Dml,
        Statement::CreateSchema { schema_name, .. } => {
            let name = schema_name.to_string();
            let dataset = name.trim_matches('`').rsplit('.').next().unwrap_or(&name);
            *schema_name =
                sqlparser::ast::SchemaName::Simple(ObjectName::from(vec![quoted(dataset)]));
            Kind::Ddl
        }
        Statement::CreateTable(create) => {
            for column in &mut create.columns {
                column.data_type = normalizer.pg_type(&column.data_type)?;
                column.name.quote_style = Some('"');
            }
            Kind::Ddl
        }
        Statement::Drop { .. } | Statement::CreateView { .. } | Statement::Truncate { .. } => {
            Kind::Ddl
        }
        Statement::AlterTable { .. } => Kind::Ddl,
        other => {
            return Err(BqError::invalid_query(format!(
                "Statement not supported by the emulator: {}",
                other
                    .to_string()
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ")
            )))
        }
    };
    if let ControlFlow::Break(err) = statement.visit(&mut normalizer) {
        return Err(err);
    }
    Ok(Translated {
        prelude: normalizer.prelude,
        sql: statement.to_string(),
        kind,
        tables: normalizer.tables,
    })
}

fn quoted(value: &str) -> Ident {
    Ident::with_quote('"', value)
}

/// The dotted path of a name: `` `p.d.t` `` and `p.d.t` alike give `[p, d, t]`.
fn path(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .flat_map(|part| match part {
            ObjectNamePart::Identifier(ident) if ident.quote_style == Some('`') => ident
                .value
                .split('.')
                .map(str::to_owned)
                .collect::<Vec<_>>(),
            ObjectNamePart::Identifier(ident) => vec![ident.value.clone()],
            other => vec![other.to_string()],
        })
        .collect()
}

/// The PostgreSQL view of `dataset.INFORMATION_SCHEMA.COLUMNS`: the catalog
/// filtered to the dataset, with BigQuery's type names (`bq_meta.type_name`).
fn information_schema_columns(ctx: &Context, dataset: &str) -> Result<Query, BqError> {
    let literal = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let sql = format!(
        "SELECT {project} AS table_catalog, table_schema, table_name, column_name, ordinal_position, \
         is_nullable, data_type FROM bq_meta.columns WHERE table_schema = {dataset}",
        project = literal(&ctx.project),
        dataset = literal(dataset),
    );
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, &sql)
        .map_err(|e| BqError::internal(format!("INFORMATION_SCHEMA view: {e}")))?;
    match statements.pop() {
        Some(Statement::Query(query)) => Ok(*query),
        _ => Err(BqError::internal("INFORMATION_SCHEMA view is not a query")),
    }
}

struct Normalizer<'a> {
    ctx: &'a Context,
    ctes: HashSet<String>,
    tables: Vec<TableRef>,
    prelude: Vec<String>,
}

impl<'a> Normalizer<'a> {
    fn new(ctx: &'a Context) -> Self {
        Self {
            ctx,
            ctes: HashSet::new(),
            tables: Vec::new(),
            prelude: Vec::new(),
        }
    }

    /// `[project.]dataset.table` (or a bare table with a default dataset) as
    /// `"dataset"."table"`; a CTE's name stays as written.
    fn qualify(&mut self, name: &mut ObjectName) -> Result<(), BqError> {
        let parts = path(name);
        if parts.first().is_some_and(|p| p == "bq_meta") {
            return Ok(());
        }
        let (dataset, table) = match parts.as_slice() {
            [table] if self.ctes.contains(table) => return Ok(()),
            [table] => match &self.ctx.default_dataset {
                Some(dataset) => (dataset.clone(), table.clone()),
                None => {
                    return Err(BqError::invalid_query(format!(
                        "Table \"{table}\" must be qualified with a dataset (e.g. dataset.table)."
                    )))
                }
            },
            [dataset, table] | [_, dataset, table] => (dataset.clone(), table.clone()),
            _ => {
                return Err(BqError::invalid_query(format!(
                    "Invalid table name: {}",
                    parts.join(".")
                )))
            }
        };
        *name = ObjectName::from(vec![quoted(&dataset), quoted(&table)]);
        let found = TableRef { dataset, table };
        if !self.tables.contains(&found) {
            self.tables.push(found);
        }
        Ok(())
    }

    /// The dataset of `[project.]dataset.INFORMATION_SCHEMA.COLUMNS`.
    fn information_schema(&self, name: &ObjectName) -> Option<String> {
        let parts = path(name);
        let n = parts.len();
        (n >= 3
            && parts[n - 2].eq_ignore_ascii_case("INFORMATION_SCHEMA")
            && parts[n - 1].eq_ignore_ascii_case("COLUMNS"))
        .then(|| parts[n - 3].clone())
    }

    /// A GoogleSQL type as PostgreSQL's; a STRUCT adds its composite type to the prelude.
    fn pg_type(&mut self, data_type: &DataType) -> Result<DataType, BqError> {
        Ok(match data_type {
            DataType::Int64
            | DataType::Int(_)
            | DataType::Integer(_)
            | DataType::BigInt(_)
            | DataType::SmallInt(_)
            | DataType::TinyInt(_) => DataType::BigInt(None),
            DataType::Float64 | DataType::Float(_) => DataType::DoublePrecision,
            DataType::Numeric(_) | DataType::Decimal(_) => {
                DataType::Numeric(ExactNumberInfo::PrecisionAndScale(38, 9))
            }
            DataType::BigNumeric(_) | DataType::BigDecimal(_) => {
                DataType::Numeric(ExactNumberInfo::PrecisionAndScale(77, 38))
            }
            DataType::Bool | DataType::Boolean => DataType::Boolean,
            DataType::String(_) => DataType::Text,
            DataType::Bytes(_) => DataType::Bytea,
            DataType::Datetime(_) => DataType::Timestamp(None, TimezoneInfo::WithoutTimeZone),
            DataType::Timestamp(_, _) => DataType::Timestamp(None, TimezoneInfo::WithTimeZone),
            DataType::Time(_, _) => DataType::Time(None, TimezoneInfo::None),
            DataType::JSON => DataType::JSONB,
            DataType::Array(ArrayElemTypeDef::AngleBracket(inner)) => DataType::Array(
                ArrayElemTypeDef::SquareBracket(Box::new(self.pg_type(inner)?), None),
            ),
            DataType::Struct(fields, _) => self.composite(fields)?,
            other => other.clone(),
        })
    }

    /// A composite type with `fields`, named by a hash of its definition so the
    /// same STRUCT always maps to the same type.
    fn composite(&mut self, fields: &[StructField]) -> Result<DataType, BqError> {
        let mut members = Vec::with_capacity(fields.len());
        for (i, field) in fields.iter().enumerate() {
            let name = field
                .field_name
                .as_ref()
                .map(|n| n.value.clone())
                .unwrap_or_else(|| format!("_field_{}", i + 1));
            members.push(format!(
                "{} {}",
                quoted(&name),
                self.pg_type(&field.field_type)?
            ));
        }
        let definition = members.join(", ");
        let name = format!("bq_struct_{:016x}", fnv1a(definition.as_bytes()));
        self.prelude.push(format!(
            "DO $$ BEGIN CREATE TYPE public.{name} AS ({definition}); \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        ));
        Ok(DataType::Custom(
            ObjectName::from(vec![Ident::new("public"), Ident::new(name)]),
            Vec::new(),
        ))
    }
}

/// FNV-1a: a stable hash (std's is randomly seeded).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl VisitorMut for Normalizer<'_> {
    type Break = BqError;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<BqError> {
        if let Some(with) = &mut query.with {
            for cte in &mut with.cte_tables {
                self.ctes.insert(cte.alias.name.value.clone());
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<BqError> {
        match self.qualify(relation) {
            Ok(()) => ControlFlow::Continue(()),
            Err(err) => ControlFlow::Break(err),
        }
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<BqError> {
        let TableFactor::Table { name, alias, .. } = factor else {
            return ControlFlow::Continue(());
        };
        let Some(dataset) = self.information_schema(name) else {
            return ControlFlow::Continue(());
        };
        let subquery = match information_schema_columns(self.ctx, &dataset) {
            Ok(query) => query,
            Err(err) => return ControlFlow::Break(err),
        };
        let alias = alias.take().unwrap_or(TableAlias {
            name: Ident::new("columns"),
            columns: Vec::new(),
        });
        *factor = TableFactor::Derived {
            lateral: false,
            subquery: Box::new(subquery),
            alias: Some(alias),
        };
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<BqError> {
        match expr {
            Expr::Identifier(ident) if ident.quote_style == Some('`') => {
                ident.quote_style = Some('"')
            }
            Expr::CompoundIdentifier(idents) => idents
                .iter_mut()
                .filter(|i| i.quote_style == Some('`'))
                .for_each(|i| i.quote_style = Some('"')),
            Expr::Cast { data_type, .. } => match self.pg_type(data_type) {
                Ok(translated) => *data_type = translated,
                Err(err) => return ControlFlow::Break(err),
            },
            Expr::TypedString(typed) => match self.pg_type(&typed.data_type) {
                Ok(translated) => typed.data_type = translated,
                Err(err) => return ControlFlow::Break(err),
            },
            // PostgreSQL cannot type `ARRAY[]`; the literal `'{}'` takes the column's.
            Expr::Array(array) if array.elem.is_empty() => {
                *expr = Expr::value(sqlparser::ast::Value::SingleQuotedString("{}".into()))
            }
            Expr::Array(array) => array.named = true,
            Expr::Struct { values, .. } => {
                *expr = Expr::Function(row_function(std::mem::take(values)));
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// `ROW(values…)`: PostgreSQL casts it to the column's composite type.
fn row_function(values: Vec<Expr>) -> sqlparser::ast::Function {
    use sqlparser::ast::{
        Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments,
    };
    let values = values
        .into_iter()
        .map(|value| match value {
            // `STRUCT(x AS a)`: the name belongs to the type, not the value.
            Expr::Named { expr, .. } => *expr,
            other => other,
        })
        .map(|value| FunctionArg::Unnamed(FunctionArgExpr::Expr(value)))
        .collect();
    Function {
        name: ObjectName::from(vec![Ident::new("ROW")]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: values,
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context {
            project: "p".into(),
            default_dataset: Some("shop".into()),
        }
    }

    fn one(sql: &str) -> Translated {
        translate(sql, &ctx()).unwrap().remove(0)
    }

    #[test]
    fn table_paths_become_quoted_schemas() {
        let t =
            one("select id from `p.shop.Orders` o join shop.items i on o.id = i.id join x on true");
        assert_eq!(
            t.sql,
            r#"SELECT id FROM "shop"."Orders" AS o JOIN "shop"."items" AS i ON o.id = i.id JOIN "shop"."x" ON true"#
        );
        assert_eq!(t.tables.len(), 3);
        assert_eq!(t.kind, Kind::Query);
        let cte = one("with x as (select 1 as a) select a from x");
        assert!(cte.tables.is_empty(), "{cte:?}");
    }

    #[test]
    fn types_structs_and_arrays_are_translated() {
        let t = one("create table shop.t (a INT64, b NUMERIC, c BIGNUMERIC, d TIMESTAMP, e DATETIME, f ARRAY<STRING>, g STRUCT<zip STRING, n INT64>, h JSON, i BYTES)");
        assert!(t.sql.contains(r#""a" BIGINT"#), "{}", t.sql);
        assert!(t.sql.contains("NUMERIC(38,9)"), "{}", t.sql);
        assert!(t.sql.contains("NUMERIC(77,38)"), "{}", t.sql);
        assert!(t.sql.contains("TIMESTAMP WITH TIME ZONE"), "{}", t.sql);
        assert!(t.sql.contains(r#""f" TEXT[]"#), "{}", t.sql);
        assert!(t.sql.contains("public.bq_struct_"), "{}", t.sql);
        assert_eq!(t.prelude.len(), 1);
        assert!(
            t.prelude[0].contains(r#"("zip" TEXT, "n" BIGINT)"#),
            "{}",
            t.prelude[0]
        );
        let insert =
            one("insert into shop.t (f, g) values (['a', 'b'], STRUCT('94110' AS zip, 1 AS n))");
        assert!(insert.sql.contains("ARRAY['a', 'b']"), "{}", insert.sql);
        assert!(insert.sql.contains("ROW('94110', 1)"), "{}", insert.sql);
    }

    #[test]
    fn errors_are_bigquerys() {
        let err = translate("select a from t", &Context::default()).unwrap_err();
        assert_eq!(err.reason, "invalidQuery");
        assert!(err.message.contains("must be qualified with a dataset"));
        let err = translate("selec 1", &ctx()).unwrap_err();
        assert!(err.message.starts_with("Syntax error:"), "{}", err.message);
        assert!(err.message.contains("at [1:"), "{}", err.message);
    }

    #[test]
    fn information_schema_reads_the_catalog_view() {
        let t = one("select column_name from `p.shop`.INFORMATION_SCHEMA.COLUMNS");
        assert!(t.sql.contains("bq_meta.columns"), "{}", t.sql);
        assert!(t.sql.contains("table_schema = 'shop'"), "{}", t.sql);
    }
}
