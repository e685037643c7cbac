//! Snowflake SQL to PostgreSQL: parsed with `sqlparser`'s Snowflake dialect, the
//! tree rewritten, and printed back.
//!
//! - Identifiers follow Snowflake's rules: unquoted ones are uppercased, quoted
//!   ones kept, and all are printed quoted, so PostgreSQL sees the exact name.
//! - Tables `D.S.T` live in the PostgreSQL schema `"D.S"`; missing parts come from
//!   the request's `database` and `schema`. `D.INFORMATION_SCHEMA.COLUMNS|TABLES`
//!   read views of the PostgreSQL catalog filtered to `D`.
//! - Types: NUMBER(p,s) and the integer names become NUMERIC (integers are
//!   NUMBER(38,0) in Snowflake), FLOAT/DOUBLE/REAL double precision, VARCHAR/STRING
//!   text, TIMESTAMP_NTZ timestamp, TIMESTAMP_LTZ timestamptz, TIMESTAMP_TZ the
//!   domain `sf_timestamp_tz`, VARIANT/OBJECT/ARRAY the jsonb domains `sf_variant`,
//!   `sf_object`, `sf_array`, BINARY bytea.
//! - Bindings (`?` or `:N`) are substituted as typed literals.

use std::collections::HashSet;
use std::ops::ControlFlow;

use serde::Deserialize;
use serde_json::Value as Json;
use sqlparser::ast::{
    AssignmentTarget, DataType, Expr, Ident, ObjectName, ObjectNamePart, ObjectType, Query,
    SchemaName, SelectItem, SetExpr, Statement, TableAlias, TableFactor, Value, VisitMut,
    VisitorMut,
};
use sqlparser::dialect::{PostgreSqlDialect, SnowflakeDialect};
use sqlparser::parser::Parser;

use super::SfError;

/// The PostgreSQL schema holding the INFORMATION_SCHEMA views.
pub const META_SCHEMA: &str = "sf_meta";

/// One bind value: `{"type": "FIXED", "value": "123"}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Binding {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: Option<Json>,
}

/// Where unqualified names resolve, and the bind values.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub database: Option<String>,
    pub schema: Option<String>,
    pub bindings: std::collections::HashMap<String, Binding>,
}

/// What a translated statement is, which decides how it runs and answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Returns rows.
    Query,
    /// INSERT, UPDATE, DELETE, MERGE: answers the counts.
    Dml(DmlKind),
    /// Anything else: answers a status line.
    Other { status: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmlKind {
    Insert,
    Update,
    Delete,
    Merge,
}

/// One statement ready for PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    pub sql: String,
    pub kind: Kind,
    /// Whether it needs a warehouse (queries and DML do, DDL does not).
    pub needs_warehouse: bool,
}

/// Translates every statement of `text`.
pub fn translate(text: &str, ctx: &Context) -> Result<Vec<Translated>, SfError> {
    if text.trim().trim_matches(';').trim().is_empty() {
        return Err(SfError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "000900",
            "42000",
            "SQL compilation error:\nEmpty SQL statement.",
        ));
    }
    let statements = Parser::parse_sql(&SnowflakeDialect {}, text).map_err(syntax_error)?;
    let mut placeholders = 0usize;
    statements
        .into_iter()
        .map(|statement| translate_one(statement, ctx, &mut placeholders))
        .collect()
}

fn syntax_error(err: sqlparser::parser::ParserError) -> SfError {
    let detail = err.to_string();
    let detail = detail
        .strip_prefix("sql parser error: ")
        .unwrap_or(&detail)
        .to_owned();
    SfError::sql(
        "001003",
        "42000",
        format!("SQL compilation error:\nsyntax error: {detail}"),
    )
}

fn not_supported(what: &str) -> SfError {
    SfError::sql(
        "391911",
        "0A000",
        format!("Unsupported statement type '{what}'."),
    )
}

fn translate_one(
    mut statement: Statement,
    ctx: &Context,
    placeholders: &mut usize,
) -> Result<Translated, SfError> {
    let (kind, needs_warehouse, prefix) = match &mut statement {
        Statement::Query(_) => (Kind::Query, true, String::new()),
        Statement::Insert(_) => (Kind::Dml(DmlKind::Insert), true, String::new()),
        Statement::Update { .. } => (Kind::Dml(DmlKind::Update), true, String::new()),
        Statement::Delete(_) => (Kind::Dml(DmlKind::Delete), true, String::new()),
        Statement::Merge { .. } => (Kind::Dml(DmlKind::Merge), true, String::new()),
        Statement::CreateDatabase {
            db_name,
            if_not_exists,
            or_replace,
            ..
        } => return Ok(create_database(db_name, *if_not_exists, *or_replace)),
        Statement::CreateSchema {
            schema_name,
            if_not_exists,
            ..
        } => return create_schema(schema_name, *if_not_exists, ctx),
        Statement::Drop {
            object_type,
            if_exists,
            names,
            ..
        } => return drop_objects(*object_type, *if_exists, names, ctx),
        Statement::CreateTable(create) => {
            let name = create.name.to_string();
            let prefix = if create.or_replace {
                create.or_replace = false;
                Some(())
            } else {
                None
            };
            for column in &mut create.columns {
                normalize(&mut column.name);
                column.data_type = pg_type(&column.data_type);
            }
            let status = format!("Table {} successfully created.", last_part(&name));
            let mut normalizer = Normalizer::new(ctx, placeholders);
            let mut name_copy = create.name.clone();
            normalizer.qualify(&mut name_copy)?;
            let drop = prefix
                .map(|()| format!("DROP TABLE IF EXISTS {name_copy}; "))
                .unwrap_or_default();
            (Kind::Other { status }, false, drop)
        }
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. } => return Err(not_supported("transaction control")),
        Statement::Use(_) => return Err(not_supported("USE")),
        Statement::ShowTables { .. } | Statement::ShowColumns { .. } => {
            return Err(not_supported("SHOW"))
        }
        _ => (
            Kind::Other {
                status: "Statement executed successfully.".into(),
            },
            false,
            String::new(),
        ),
    };
    normalize_target_columns(&mut statement);
    let mut normalizer = Normalizer::new(ctx, placeholders);
    if let ControlFlow::Break(err) = statement.visit(&mut normalizer) {
        return Err(err);
    }
    Ok(Translated {
        sql: format!("{prefix}{statement}"),
        kind,
        needs_warehouse,
    })
}

/// Column names a statement writes to, which the expression visitor does not see:
/// INSERT's column list and UPDATE's assignment targets (`SET col = …`).
fn normalize_target_columns(statement: &mut Statement) {
    let normalize_name = |name: &mut ObjectName| {
        *name = ObjectName::from(name_parts(name));
    };
    match statement {
        Statement::Insert(insert) => insert.columns.iter_mut().for_each(normalize),
        Statement::Update { assignments, .. } => {
            for assignment in assignments {
                match &mut assignment.target {
                    AssignmentTarget::ColumnName(name) => normalize_name(name),
                    AssignmentTarget::Tuple(names) => names.iter_mut().for_each(normalize_name),
                }
            }
        }
        _ => {}
    }
}

fn last_part(name: &str) -> String {
    name.rsplit('.')
        .next()
        .unwrap_or(name)
        .trim_matches('"')
        .to_ascii_uppercase()
}

/// Snowflake's rule for an identifier: unquoted means uppercase; printed quoted.
fn normalize(ident: &mut Ident) {
    if ident.quote_style.is_none() {
        ident.value = ident.value.to_uppercase();
    }
    ident.quote_style = Some('"');
}

fn quoted(value: &str) -> Ident {
    Ident::with_quote('"', value)
}

fn name_parts(name: &ObjectName) -> Vec<Ident> {
    name.0
        .iter()
        .filter_map(|part| match part {
            ObjectNamePart::Identifier(ident) => {
                let mut ident = ident.clone();
                normalize(&mut ident);
                Some(ident)
            }
            ObjectNamePart::Function(_) => None,
        })
        .collect()
}

/// A SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn create_database(name: &ObjectName, if_not_exists: bool, or_replace: bool) -> Translated {
    let database = name_parts(name).pop().map(|i| i.value).unwrap_or_default();
    let schema = quoted(&format!("{database}.PUBLIC"));
    let mut sql = String::new();
    if or_replace {
        sql.push_str(&drop_database_sql(&database));
    }
    let guard = if if_not_exists { "IF NOT EXISTS " } else { "" };
    sql.push_str(&format!("CREATE SCHEMA {guard}{schema}"));
    Translated {
        sql,
        kind: Kind::Other {
            status: format!("Database {database} successfully created."),
        },
        needs_warehouse: false,
    }
}

/// Drops every schema of a database: `"D.*"`.
fn drop_database_sql(database: &str) -> String {
    format!(
        "DO $sf$ DECLARE s text; BEGIN FOR s IN SELECT nspname FROM pg_namespace WHERE split_part(nspname, '.', 1) = {} AND position('.' in nspname) > 0 LOOP EXECUTE format('DROP SCHEMA %I CASCADE', s); END LOOP; END $sf$; ",
        literal(database)
    )
}

fn create_schema(
    name: &SchemaName,
    if_not_exists: bool,
    ctx: &Context,
) -> Result<Translated, SfError> {
    let SchemaName::Simple(name) = name else {
        return Err(not_supported("CREATE SCHEMA AUTHORIZATION"));
    };
    let pg = schema_name(name, ctx)?;
    let guard = if if_not_exists { "IF NOT EXISTS " } else { "" };
    Ok(Translated {
        sql: format!("CREATE SCHEMA {guard}{pg}"),
        kind: Kind::Other {
            status: format!(
                "Schema {} successfully created.",
                last_part(&name.to_string())
            ),
        },
        needs_warehouse: false,
    })
}

/// `S` or `D.S` to the PostgreSQL schema `"D.S"`.
fn schema_name(name: &ObjectName, ctx: &Context) -> Result<Ident, SfError> {
    let parts = name_parts(name);
    let (database, schema) = match parts.as_slice() {
        [schema] => (current_database(ctx, "SCHEMA")?, schema.value.clone()),
        [database, schema] => (database.value.clone(), schema.value.clone()),
        _ => {
            return Err(SfError::sql(
                "001003",
                "42000",
                format!("SQL compilation error:\ninvalid schema name '{name}'"),
            ))
        }
    };
    Ok(quoted(&format!("{database}.{schema}")))
}

fn current_database(ctx: &Context, what: &str) -> Result<String, SfError> {
    ctx.database.as_ref().map(|d| d.to_uppercase()).ok_or_else(|| {
        SfError::sql(
            "090105",
            "22000",
            format!("Cannot perform {what}. This session does not have a current database. Call 'USE DATABASE', or use a qualified name."),
        )
    })
}

fn drop_objects(
    object_type: ObjectType,
    if_exists: bool,
    names: &[ObjectName],
    ctx: &Context,
) -> Result<Translated, SfError> {
    let guard = if if_exists { "IF EXISTS " } else { "" };
    let mut sql = String::new();
    let mut placeholders = 0;
    let mut normalizer = Normalizer::new(ctx, &mut placeholders);
    for name in names {
        match object_type {
            ObjectType::Table | ObjectType::View => {
                let mut name = name.clone();
                normalizer.qualify(&mut name)?;
                sql.push_str(&format!("DROP {object_type} {guard}{name} CASCADE; "));
            }
            ObjectType::Schema => {
                let schema = schema_name(name, ctx)?;
                sql.push_str(&format!("DROP SCHEMA {guard}{schema} CASCADE; "));
            }
            ObjectType::Database => {
                let database = name_parts(name).pop().map(|i| i.value).unwrap_or_default();
                sql.push_str(&drop_database_sql(&database));
            }
            other => return Err(not_supported(&format!("DROP {other}"))),
        }
    }
    let dropped: Vec<String> = names.iter().map(|n| last_part(&n.to_string())).collect();
    Ok(Translated {
        sql,
        kind: Kind::Other {
            status: format!("{} successfully dropped.", dropped.join(", ")),
        },
        needs_warehouse: false,
    })
}

/// The PostgreSQL type a Snowflake type is stored as.
pub fn pg_type(data_type: &DataType) -> DataType {
    let text = data_type.to_string().to_uppercase();
    let (base, args) = match text.split_once('(') {
        Some((base, rest)) => (
            base.trim().to_owned(),
            Some(rest.trim_end_matches(')').replace(' ', "")),
        ),
        None => (text.trim().to_owned(), None),
    };
    let mapped = match base.as_str() {
        "NUMBER" | "NUMERIC" | "DECIMAL" | "DEC" => match args.as_deref() {
            None => "NUMERIC(38,0)".to_owned(),
            Some(args) if args.contains(',') => format!("NUMERIC({args})"),
            Some(precision) => format!("NUMERIC({precision},0)"),
        },
        "INT" | "INTEGER" | "BIGINT" | "SMALLINT" | "TINYINT" | "BYTEINT" => "NUMERIC(38,0)".into(),
        "FLOAT" | "FLOAT4" | "FLOAT8" | "DOUBLE" | "DOUBLE PRECISION" | "REAL" => {
            "DOUBLE PRECISION".into()
        }
        "VARCHAR" | "CHAR" | "CHARACTER" | "NCHAR" | "NVARCHAR" | "NVARCHAR2" | "CHAR VARYING"
        | "CHARACTER VARYING" => match args {
            Some(length) => format!("VARCHAR({length})"),
            None => "TEXT".into(),
        },
        "STRING" | "TEXT" => "TEXT".into(),
        "BOOLEAN" => "BOOLEAN".into(),
        "DATE" => "DATE".into(),
        "TIME" => "TIME".into(),
        "DATETIME" | "TIMESTAMP" | "TIMESTAMP_NTZ" | "TIMESTAMP WITHOUT TIME ZONE" => {
            "TIMESTAMP".into()
        }
        "TIMESTAMP_LTZ" | "TIMESTAMP WITH LOCAL TIME ZONE" => "TIMESTAMPTZ".into(),
        "TIMESTAMP_TZ" | "TIMESTAMP WITH TIME ZONE" | "TIMESTAMPTZ" => "sf_timestamp_tz".into(),
        "VARIANT" => "sf_variant".into(),
        "OBJECT" => "sf_object".into(),
        "ARRAY" => "sf_array".into(),
        "BINARY" | "VARBINARY" | "BYTEA" => "BYTEA".into(),
        _ => return data_type.clone(),
    };
    DataType::Custom(ObjectName::from(vec![Ident::new(mapped)]), Vec::new())
}

/// Rewrites names, types and bindings in place.
struct Normalizer<'a> {
    ctx: &'a Context,
    ctes: HashSet<String>,
    placeholders: &'a mut usize,
}

impl<'a> Normalizer<'a> {
    fn new(ctx: &'a Context, placeholders: &'a mut usize) -> Self {
        Self {
            ctx,
            ctes: HashSet::new(),
            placeholders,
        }
    }

    /// `T`, `S.T` or `D.S.T` to `"D.S"."T"`.
    fn qualify(&mut self, name: &mut ObjectName) -> Result<(), SfError> {
        let parts = name_parts(name);
        if let [only] = parts.as_slice() {
            if self.ctes.contains(&only.value) {
                *name = ObjectName::from(parts);
                return Ok(());
            }
        }
        if parts
            .first()
            .is_some_and(|p| p.value.eq_ignore_ascii_case(META_SCHEMA))
        {
            return Ok(());
        }
        let (database, schema, table) = match parts.as_slice() {
            [table] => (
                current_database(self.ctx, "SELECT")?,
                self.ctx.schema.as_ref().map(|s| s.to_uppercase()).ok_or_else(|| {
                    SfError::sql(
                        "090106",
                        "22000",
                        "Cannot perform SELECT. This session does not have a current schema. Call 'USE SCHEMA', or use a qualified name.",
                    )
                })?,
                table.value.clone(),
            ),
            [schema, table] => (
                current_database(self.ctx, "SELECT")?,
                schema.value.clone(),
                table.value.clone(),
            ),
            [database, schema, table] => {
                (database.value.clone(), schema.value.clone(), table.value.clone())
            }
            _ => {
                return Err(SfError::sql(
                    "001003",
                    "42000",
                    format!("SQL compilation error:\ninvalid object name '{name}'"),
                ))
            }
        };
        *name = ObjectName::from(vec![
            quoted(&format!("{database}.{schema}")),
            quoted(&table),
        ]);
        Ok(())
    }

    /// `D.INFORMATION_SCHEMA.X` as a subquery over the catalog views, filtered to `D`.
    fn information_schema(&self, name: &ObjectName) -> Result<Option<Query>, SfError> {
        let parts = name_parts(name);
        let (database, view) = match parts.as_slice() {
            [schema, view] if schema.value == "INFORMATION_SCHEMA" => {
                (current_database(self.ctx, "SELECT")?, view.value.clone())
            }
            [database, schema, view] if schema.value == "INFORMATION_SCHEMA" => {
                (database.value.clone(), view.value.clone())
            }
            _ => return Ok(None),
        };
        if view != "COLUMNS" && view != "TABLES" {
            return Err(SfError::sql(
                "002003",
                "42S02",
                format!("SQL compilation error:\nObject '{database}.INFORMATION_SCHEMA.{view}' does not exist or not authorized."),
            ));
        }
        let sql = format!(
            "SELECT * FROM {META_SCHEMA}.\"{view}\" WHERE \"TABLE_CATALOG\" = {}",
            literal(&database)
        );
        let mut parsed = Parser::parse_sql(&PostgreSqlDialect {}, &sql).map_err(syntax_error)?;
        match parsed.pop() {
            Some(Statement::Query(query)) => Ok(Some(*query)),
            _ => Ok(None),
        }
    }

    fn bind(&mut self, placeholder: &str) -> Result<Expr, SfError> {
        let key = match placeholder.strip_prefix(':') {
            Some(n) => n.to_owned(),
            None => {
                *self.placeholders += 1;
                self.placeholders.to_string()
            }
        };
        let binding = self.ctx.bindings.get(&key).ok_or_else(|| {
            SfError::sql(
                "002049",
                "42601",
                format!("SQL compilation error: error line 0 at position 0\nBind variable {placeholder} not set."),
            )
        })?;
        let text = match &binding.value {
            None | Some(Json::Null) => return parse_expr("NULL"),
            Some(Json::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        let cast = match binding.kind.to_ascii_uppercase().as_str() {
            "FIXED" => "NUMERIC",
            "REAL" => "DOUBLE PRECISION",
            "BOOLEAN" => "BOOLEAN",
            "BINARY" => return parse_expr(&format!("decode({}, 'hex')", literal(&text))),
            "DATE" => {
                return parse_expr(&format!(
                    "(DATE '1970-01-01' + ({}::bigint / 86400000)::int)",
                    literal(&text)
                ))
            }
            "TIMESTAMP_NTZ" => {
                return parse_expr(&format!(
                    "(to_timestamp({}::numeric / 1e9) AT TIME ZONE 'UTC')",
                    literal(&text)
                ))
            }
            "TIMESTAMP_LTZ" | "TIMESTAMP_TZ" => {
                let nanos = text.split_whitespace().next().unwrap_or_default();
                return parse_expr(&format!("to_timestamp({}::numeric / 1e9)", literal(nanos)));
            }
            _ => "TEXT",
        };
        parse_expr(&format!("CAST({} AS {cast})", literal(&text)))
    }

    /// Select-list aliases of `query` and of its set operations.
    fn normalize_aliases(body: &mut SetExpr) {
        match body {
            SetExpr::Select(select) => {
                for item in &mut select.projection {
                    if let SelectItem::ExprWithAlias { alias, .. } = item {
                        normalize(alias);
                    }
                }
            }
            SetExpr::SetOperation { left, right, .. } => {
                Self::normalize_aliases(left);
                Self::normalize_aliases(right);
            }
            _ => {}
        }
    }
}

fn parse_expr(text: &str) -> Result<Expr, SfError> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .map_err(syntax_error)
}

fn normalize_alias(alias: &mut Option<TableAlias>) {
    if let Some(alias) = alias {
        normalize(&mut alias.name);
        for column in &mut alias.columns {
            normalize(&mut column.name);
        }
    }
}

impl VisitorMut for Normalizer<'_> {
    type Break = SfError;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<SfError> {
        if let Some(with) = &mut query.with {
            for cte in &mut with.cte_tables {
                normalize(&mut cte.alias.name);
                self.ctes.insert(cte.alias.name.value.clone());
            }
        }
        Self::normalize_aliases(&mut query.body);
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<SfError> {
        match self.qualify(relation) {
            Ok(()) => ControlFlow::Continue(()),
            Err(err) => ControlFlow::Break(err),
        }
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<SfError> {
        if let TableFactor::Table { name, alias, .. } = factor {
            match self.information_schema(name) {
                Err(err) => return ControlFlow::Break(err),
                Ok(Some(subquery)) => {
                    let view = name_parts(name)
                        .pop()
                        .expect("an INFORMATION_SCHEMA name has parts");
                    let alias = alias.take().unwrap_or(TableAlias {
                        name: view,
                        columns: Vec::new(),
                    });
                    *factor = TableFactor::Derived {
                        lateral: false,
                        subquery: Box::new(subquery),
                        alias: Some(alias),
                    };
                }
                Ok(None) => {}
            }
        }
        match factor {
            TableFactor::Table { alias, .. }
            | TableFactor::Derived { alias, .. }
            | TableFactor::TableFunction { alias, .. }
            | TableFactor::UNNEST { alias, .. } => normalize_alias(alias),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<SfError> {
        match expr {
            Expr::Identifier(ident) => normalize(ident),
            Expr::CompoundIdentifier(idents) => idents.iter_mut().for_each(normalize),
            Expr::Cast { data_type, .. } => *data_type = pg_type(data_type),
            Expr::Value(value) => {
                if let Value::Placeholder(placeholder) = &value.value {
                    match self.bind(&placeholder.clone()) {
                        Ok(bound) => *expr = bound,
                        Err(err) => return ControlFlow::Break(err),
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context {
            database: Some("DEMO".into()),
            schema: Some("NEXLA".into()),
            ..Context::default()
        }
    }

    fn one(sql: &str) -> Translated {
        translate(sql, &ctx()).unwrap().pop().unwrap()
    }

    #[test]
    fn three_part_names_become_dotted_schemas() {
        let t = one("select email, lifetime_value from demo.nexla.customer where email = 'a'");
        assert_eq!(
            t.sql,
            r#"SELECT "EMAIL", "LIFETIME_VALUE" FROM "DEMO.NEXLA"."CUSTOMER" WHERE "EMAIL" = 'a'"#
        );
        assert_eq!(t.kind, Kind::Query);
        let t = one(r#"select "mixed" as m from customer c"#);
        assert_eq!(
            t.sql,
            r#"SELECT "mixed" AS "M" FROM "DEMO.NEXLA"."CUSTOMER" AS "C""#
        );
    }

    #[test]
    fn types_are_translated() {
        let t = one("create or replace table customer (email varchar(200), ltv number(12,2), n int, v variant, ts timestamp_tz, b binary)");
        assert_eq!(
            t.sql,
            r#"DROP TABLE IF EXISTS "DEMO.NEXLA"."CUSTOMER"; CREATE TABLE "DEMO.NEXLA"."CUSTOMER" ("EMAIL" VARCHAR(200), "LTV" NUMERIC(12,2), "N" NUMERIC(38,0), "V" sf_variant, "TS" sf_timestamp_tz, "B" BYTEA)"#
        );
        assert_eq!(
            t.kind,
            Kind::Other {
                status: "Table CUSTOMER successfully created.".into()
            }
        );
    }

    #[test]
    fn bindings_are_substituted_in_order() {
        let mut c = ctx();
        c.bindings.insert(
            "1".into(),
            Binding {
                kind: "FIXED".into(),
                value: Some(Json::String("12".into())),
            },
        );
        c.bindings.insert(
            "2".into(),
            Binding {
                kind: "TEXT".into(),
                value: Some(Json::String("o'k".into())),
            },
        );
        let t = translate("select * from t where a = ? and b = ?", &c)
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(
            t.sql,
            r#"SELECT * FROM "DEMO.NEXLA"."T" WHERE "A" = CAST('12' AS NUMERIC) AND "B" = CAST('o''k' AS TEXT)"#
        );
        let err = translate("select ?", &ctx()).unwrap_err();
        assert_eq!(err.code, "002049");
    }

    #[test]
    fn ctes_are_not_qualified_and_errors_are_snowflakes() {
        let t = one("with x as (select 1 as a) select a from x");
        assert_eq!(
            t.sql,
            r#"WITH "X" AS (SELECT 1 AS "A") SELECT "A" FROM "X""#
        );
        assert_eq!(translate("selec 1", &ctx()).unwrap_err().code, "001003");
        let no_db = Context::default();
        assert_eq!(
            translate("select * from t", &no_db).unwrap_err().code,
            "090105"
        );
        assert_eq!(translate("commit", &ctx()).unwrap_err().code, "391911");
    }

    #[test]
    fn update_targets_follow_the_identifier_rules() {
        let t = one("update customer set ltv = ltv + 1, \"note\" = 'x' where email = 'a'");
        assert_eq!(
            t.sql,
            r#"UPDATE "DEMO.NEXLA"."CUSTOMER" SET "LTV" = "LTV" + 1, "note" = 'x' WHERE "EMAIL" = 'a'"#
        );
        assert_eq!(t.kind, Kind::Dml(DmlKind::Update));
    }

    #[test]
    fn databases_and_schemas_are_postgres_schemas() {
        assert_eq!(
            one("create database if not exists demo").sql,
            r#"CREATE SCHEMA IF NOT EXISTS "DEMO.PUBLIC""#
        );
        assert_eq!(
            one("create schema demo.nexla").sql,
            r#"CREATE SCHEMA "DEMO.NEXLA""#
        );
        assert_eq!(
            one("drop table if exists customer").sql,
            r#"DROP TABLE IF EXISTS "DEMO.NEXLA"."CUSTOMER" CASCADE; "#
        );
        let t = one("select column_name from information_schema.columns");
        assert!(t.sql.contains(r#"FROM (SELECT * FROM sf_meta."COLUMNS" WHERE "TABLE_CATALOG" = 'DEMO') AS "COLUMNS""#), "{}", t.sql);
    }
}
