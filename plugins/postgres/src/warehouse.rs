//! The diff inside PostgreSQL (`diff: warehouse` on a model; the contract's
//! `warehouse-diff-api`). Each sync's delivered snapshot lives in table
//! `sluice."snapshot_<sync>"` (key text, hash bytea, dest_id bytea); the
//! diff is one query that hashes every row of the model in SQL and returns
//! only the rows whose key is not in the snapshot or whose hash differs, so
//! unchanged rows never leave the database. The host advances the snapshot
//! with [`advance`] after the destination acknowledged rows, never before.
//!
//! The hash is the canonical form of `docs/warehouse-diff.md`
//! (`sluice_sdk::canonical`), written here as SQL per column type: the text
//! each value becomes is the one its decoded [`Value`] has in Rust.

use crate::config::Config;
use crate::conn::Connection;
use crate::error::DbError;
use crate::reader::{begin_statement, describe, quote_ident, PgReader};
use crate::types::{self, Kind, Oid};
use sluice_sdk::{canonical, DeliveredRow, DiffRequest, PluginError, Value};
use std::fmt::Write as _;

/// The schema every sync's snapshot table lives in.
pub const SCHEMA: &str = "sluice";
/// The column the diff adds after the model's: the row's content hash.
pub const HASH_COLUMN: &str = "__sluice_hash";
/// The column after it: the hash the snapshot recorded, null for a new key.
pub const PREVIOUS_COLUMN: &str = "__sluice_previous";
/// PostgreSQL's identifier limit (NAMEDATALEN - 1).
const MAX_IDENT: usize = 63;
/// The statement the model is described with, inside the read.
const MODEL_STATEMENT: &str = "sluice_model";

/// `snapshot_<sync>`: the sync's table in [`SCHEMA`].
pub fn snapshot_table(sync: &str) -> Result<String, PluginError> {
    let table = format!("snapshot_{sync}");
    if table.len() > MAX_IDENT || sync.is_empty() || sync.contains('\0') {
        return Err(PluginError::Config(format!(
            "sync `{sync}`: its snapshot table `{SCHEMA}.{table}` would be longer than \
             PostgreSQL's {MAX_IDENT}-byte identifier limit; use a shorter sync name"
        )));
    }
    Ok(table)
}

fn qualified(table: &str) -> String {
    format!("{}.{}", quote_ident(SCHEMA), quote_ident(table))
}

/// A SQL string literal (standard-conforming: only quotes are doubled).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Open the diff of `request` as a reader of the changed rows.
pub fn open_diff(config: &Config, request: DiffRequest) -> Result<PgReader, PluginError> {
    if config.redshift {
        return Err(PluginError::Config(format!(
            "sync `{}`: diff: warehouse is not supported in the Redshift mode (its SQL has no \
             float8send or sha256); use diff: host",
            request.sync
        )));
    }
    check_seed(&request.seed)?;
    let table = snapshot_table(&request.sync)?;
    let mut conn = Connection::connect(config)?;
    let opened = (|| {
        let exists = if request.dry_run {
            snapshot_exists(&mut conn, &table)?
        } else {
            ensure_snapshot(&mut conn, &request.sync, &table)?;
            true
        };
        conn.simple_query(begin_statement(false))?;
        let context = format!("the model of sync `{}`", request.sync);
        let described = describe(&mut conn, MODEL_STATEMENT, &request.query, &context)?;
        let oids: Vec<Oid> = described.iter().map(|(_, oid)| *oid).collect();
        let kinds = types::resolve(&mut conn, &oids)?;
        let columns: Vec<ModelColumn> = described
            .into_iter()
            .zip(kinds)
            .map(|((name, oid), kind)| ModelColumn { name, oid, kind })
            .collect();
        let compare = exists && !request.full_resync;
        diff_sql(&request, &columns, compare.then_some(table.as_str()))
    })();
    match opened {
        Ok(sql) => PgReader::open_in_transaction(conn, &sql),
        Err(e) => {
            conn.terminate();
            Err(e)
        }
    }
}

/// The seed is the host's fingerprint in hex: checked, since it is
/// written into the query.
fn check_seed(seed: &str) -> Result<(), PluginError> {
    if seed.len() > 64 || !seed.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(PluginError::Permanent(format!(
            "the diff's seed must be hexadecimal digits, got {seed:?}"
        )));
    }
    Ok(())
}

/// A column of the model's result.
pub struct ModelColumn {
    pub name: String,
    pub oid: Oid,
    pub kind: Kind,
}

/// The diff query: every row of the model with its key and hash, anti-
/// joined with the snapshot (`table`; `None`: compare with nothing).
pub fn diff_sql(
    request: &DiffRequest,
    columns: &[ModelColumn],
    table: Option<&str>,
) -> Result<String, PluginError> {
    for key in &request.primary_key {
        if !columns.iter().any(|c| &c.name == key) {
            let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
            return Err(PluginError::Config(format!(
                "sync `{}`: primary key column `{key}` is not among the model's columns [{}]",
                request.sync,
                names.join(", ")
            )));
        }
    }
    let hash = row_hash_sql(&request.seed, columns, "m")?;
    let outer: Vec<String> = columns
        .iter()
        .map(|c| format!("c.{}", quote_ident(&c.name)))
        .collect();
    let Some(table) = table else {
        let inner: Vec<String> = columns
            .iter()
            .map(|c| format!("m.{}", quote_ident(&c.name)))
            .collect();
        return Ok(format!(
            "SELECT {}, {hash} AS {}, NULL::bytea AS {} FROM ({}\n) AS m",
            inner.join(", "),
            quote_ident(HASH_COLUMN),
            quote_ident(PREVIOUS_COLUMN),
            request.query
        ));
    };
    let key = key_sql(&request.primary_key, columns, "m")?;
    Ok(format!(
        "SELECT {}, c.{hc}, s.hash AS {pc} FROM (SELECT m.*, {hash} AS {hc}, {key} AS \"__sluice_key\" FROM ({}\n) AS m) AS c \
         LEFT JOIN {} AS s ON s.key = c.\"__sluice_key\" \
         WHERE s.key IS NULL OR s.hash <> c.{hc}",
        outer.join(", "),
        request.query,
        qualified(table),
        hc = quote_ident(HASH_COLUMN),
        pc = quote_ident(PREVIOUS_COLUMN),
    ))
}

/// SQL for the content hash of a row of relation `alias`: the first 16
/// bytes of SHA-256 over the canonical form (`canonical::row`).
pub fn row_hash_sql(
    seed: &str,
    columns: &[ModelColumn],
    alias: &str,
) -> Result<String, PluginError> {
    let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
    let mut parts = vec![literal(&format!("{seed}|"))];
    for i in canonical::column_order(&names) {
        let c = &columns[i];
        parts.push(literal(&format!("{}:{}", c.name.len(), c.name)));
        parts.push(value_sql(c, alias)?);
    }
    Ok(format!(
        "substring(sha256(convert_to({}, 'UTF8')) FROM 1 FOR 16)",
        parts.join(" || ")
    ))
}

/// SQL for the canonical form of a key (`canonical::key`).
pub fn key_sql(
    key: &[String],
    columns: &[ModelColumn],
    alias: &str,
) -> Result<String, PluginError> {
    let mut parts = Vec::with_capacity(key.len());
    for name in key {
        if let Some(c) = columns.iter().find(|c| &c.name == name) {
            parts.push(value_sql(c, alias)?);
        }
    }
    Ok(format!("({})", parts.join(" || ")))
}

/// SQL for the canonical form of one column's value: the form of the
/// `Value` the source decodes it to (`decode.rs`), NULL as `n`.
pub fn value_sql(column: &ModelColumn, alias: &str) -> Result<String, PluginError> {
    let v = format!("{alias}.{}", quote_ident(&column.name));
    let sized = |tag: char, text: &str| format!("'{tag}' || octet_length({text}) || ':' || {text}");
    let float = |x: &str| {
        format!(
            "'f' || encode(float8send(CASE WHEN {x} = 0 THEN 0::float8 WHEN {x} = 'NaN'::float8 \
             THEN 'NaN'::float8 ELSE {x} END), 'hex')"
        )
    };
    // ±infinity dates and timestamps decode to the text `infinity`.
    let infinite = sized('t', &format!("{v}::text"));
    let micros = |ts: &str| {
        format!(
            "'s' || (({ts})::date - DATE '1970-01-01')::int8 * 86400000000 \
             + round(extract(epoch FROM ({ts})::time) * 1000000)::int8 || ';'"
        )
    };
    let form = match column.kind {
        Kind::Bool => format!("CASE WHEN {v} THEN 'b1' ELSE 'b0' END"),
        Kind::Int2 | Kind::Int4 | Kind::Int8 | Kind::Oid => format!("'i' || {v}::text || ';'"),
        Kind::Float8 => float(&format!("{v}::float8")),
        // float4 widens through its shortest decimal form, as decode does.
        Kind::Float4 => float(&format!("{v}::text::float8")),
        Kind::Numeric => format!(
            "CASE {v}::text WHEN 'NaN' THEN 'f7ff8000000000000' WHEN 'Infinity' THEN \
             'f7ff0000000000000' WHEN '-Infinity' THEN 'ffff0000000000000' ELSE {} END",
            sized('d', &format!("{v}::text"))
        ),
        // text, varchar and name cast as they print; every other type read
        // as text (bpchar with its padding, enums, time, interval...) is
        // written by its output function, as the wire carries it.
        Kind::Text if matches!(column.oid, 19 | 25 | 1043) => sized('t', &format!("{v}::text")),
        Kind::Text => sized('t', &format!("format('%s', {v})")),
        Kind::Uuid => format!("'t36:' || {v}::text"),
        Kind::Json => sized('j', &format!("{v}::text")),
        Kind::Bytea => format!("'x' || 2 * octet_length({v}) || ':' || encode({v}, 'hex')"),
        Kind::Date => format!(
            "CASE WHEN isfinite({v}) THEN 'c' || ({v} - DATE '1970-01-01') || ';' ELSE {infinite} END"
        ),
        Kind::Timestamp => format!(
            "CASE WHEN isfinite({v}) THEN {} ELSE {infinite} END",
            micros(&v)
        ),
        Kind::TimestampTz => format!(
            "CASE WHEN isfinite({v}) THEN {} ELSE {infinite} END",
            micros(&format!("{v} AT TIME ZONE 'UTC'"))
        ),
        Kind::Array { .. } => {
            return Err(PluginError::Config(format!(
                "column `{}` (type OID {}) is an array, which diff: warehouse cannot hash yet \
                 (the source renders arrays as JSON on the host); cast it in the model, e.g. \
                 `to_jsonb({})`, or use diff: host",
                column.name,
                column.oid,
                quote_ident(&column.name)
            )))
        }
    };
    Ok(format!("(CASE WHEN {v} IS NULL THEN 'n' ELSE {form} END)"))
}

fn snapshot_exists(conn: &mut Connection, table: &str) -> Result<bool, PluginError> {
    let rows = conn.simple_query(&format!(
        "SELECT to_regclass({}) IS NOT NULL",
        literal(&qualified(table))
    ))?;
    Ok(first(&rows) == Some("t"))
}

fn first(rows: &[Vec<Option<String>>]) -> Option<&str> {
    rows.first()?.first()?.as_deref()
}

/// Create the schema and the sync's table when missing, and check that the
/// user may read and write it; every refusal names the sync, the schema or
/// table, the privilege and the statement that grants it.
fn ensure_snapshot(conn: &mut Connection, sync: &str, table: &str) -> Result<(), PluginError> {
    let full = qualified(table);
    let rows = conn.simple_query(&format!(
        "SELECT current_user, current_database(), to_regnamespace({}) IS NOT NULL, \
         to_regclass({}) IS NOT NULL",
        literal(&quote_ident(SCHEMA)),
        literal(&full)
    ))?;
    let row = rows.first().cloned().unwrap_or_default();
    let get = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
    let (user, database) = (get(0), get(1));
    let refused = |what: String| {
        PluginError::Permanent(format!(
            "sync `{sync}` (diff: warehouse): user `{user}` {what}"
        ))
    };
    if get(2) != "t" {
        let created = conn.query_params(
            &format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(SCHEMA)),
            &[],
            &[],
        )?;
        if let Err(e) = created {
            let code = e.code.clone();
            return Err(match code.as_str() {
                "42501" => refused(format!(
                    "may not create schema `{SCHEMA}` for the snapshot: it needs the CREATE \
                     privilege on database `{database}` (GRANT CREATE ON DATABASE {} TO {}), \
                     or an administrator creates it (CREATE SCHEMA {SCHEMA} AUTHORIZATION {})",
                    quote_ident(&database),
                    quote_ident(&user),
                    quote_ident(&user)
                )),
                _ => e.into_plugin_error(&format!("creating schema `{SCHEMA}`")),
            });
        }
    }
    if get(3) != "t" {
        let created = conn.query_params(
            &format!(
                "CREATE TABLE IF NOT EXISTS {full} (key text PRIMARY KEY, hash bytea NOT NULL, \
                 dest_id bytea, delivered_at timestamptz NOT NULL DEFAULT now())"
            ),
            &[],
            &[],
        )?;
        if let Err(e) = created {
            let code = e.code.clone();
            return Err(match code.as_str() {
                "42501" => refused(format!(
                    "may not create table `{SCHEMA}.{table}` for the snapshot: it needs the \
                     CREATE privilege on schema `{SCHEMA}` (GRANT USAGE, CREATE ON SCHEMA \
                     {SCHEMA} TO {})",
                    quote_ident(&user)
                )),
                _ => e.into_plugin_error(&format!("creating table `{SCHEMA}.{table}`")),
            });
        }
    }
    let rows = conn.simple_query(&format!(
        "SELECT has_schema_privilege({s}, 'USAGE'), has_table_privilege({t}, 'SELECT'), \
         has_table_privilege({t}, 'INSERT'), has_table_privilege({t}, 'UPDATE')",
        s = literal(SCHEMA),
        t = literal(&full)
    ))?;
    let row = rows.first().cloned().unwrap_or_default();
    let granted = |i: usize| row.get(i).cloned().flatten().as_deref() == Some("t");
    if !granted(0) {
        return Err(refused(format!(
            "lacks the USAGE privilege on schema `{SCHEMA}` (GRANT USAGE ON SCHEMA {SCHEMA} TO {})",
            quote_ident(&user)
        )));
    }
    let missing: Vec<&str> = ["SELECT", "INSERT", "UPDATE"]
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !granted(i + 1))
        .map(|(_, p)| p)
        .collect();
    if !missing.is_empty() {
        return Err(refused(format!(
            "lacks {} on table `{SCHEMA}.{table}` (GRANT {} ON {full} TO {})",
            missing.join(", "),
            missing.join(", "),
            quote_ident(&user)
        )));
    }
    Ok(())
}

/// Record acknowledged rows in the sync's snapshot, in one statement (all
/// or none). A key given twice keeps its last row.
pub fn advance(config: &Config, sync: &str, rows: Vec<DeliveredRow>) -> Result<(), PluginError> {
    if rows.is_empty() {
        return Ok(());
    }
    let table = snapshot_table(sync)?;
    let mut latest: std::collections::HashMap<String, usize> = Default::default();
    let keys: Vec<String> = rows
        .iter()
        .map(|r| canonical::key(r.key.iter().map(Value::view)))
        .collect();
    for (i, k) in keys.iter().enumerate() {
        latest.insert(k.clone(), i);
    }
    let (mut k_arr, mut h_arr, mut i_arr) =
        (String::from("{"), String::from("{"), String::from("{"));
    let mut first_row = true;
    for (i, row) in rows.iter().enumerate() {
        if latest.get(&keys[i]) != Some(&i) {
            continue;
        }
        if row.hash.len() != 16 {
            return Err(PluginError::Permanent(format!(
                "sync `{sync}`: a content hash of {} bytes to record (16 expected)",
                row.hash.len()
            )));
        }
        if !first_row {
            k_arr.push(',');
            h_arr.push(',');
            i_arr.push(',');
        }
        first_row = false;
        array_element(&mut k_arr, &keys[i]);
        h_arr.push_str(&hex(&row.hash));
        match &row.id {
            Some(id) => i_arr.push_str(&hex(id)),
            None => i_arr.push_str("NULL"),
        }
    }
    for a in [&mut k_arr, &mut h_arr, &mut i_arr] {
        a.push('}');
    }
    let full = qualified(&table);
    let sql = format!(
        "INSERT INTO {full} AS s (key, hash, dest_id, delivered_at) \
         SELECT k, decode(h, 'hex'), decode(i, 'hex'), now() \
         FROM unnest($1::text[], $2::text[], $3::text[]) AS u(k, h, i) \
         ON CONFLICT (key) DO UPDATE SET hash = EXCLUDED.hash, \
         dest_id = COALESCE(EXCLUDED.dest_id, s.dest_id), delivered_at = EXCLUDED.delivered_at"
    );
    let mut conn = Connection::connect(config)?;
    let done = conn.query_params(&sql, &[], &[Some(&k_arr), Some(&h_arr), Some(&i_arr)]);
    conn.terminate();
    match done? {
        Ok(_) => Ok(()),
        Err(e) if e.code == "42501" => Err(PluginError::Permanent(format!(
            "sync `{sync}` (diff: warehouse): may not record acknowledged rows in \
             `{SCHEMA}.{table}`: {} (GRANT SELECT, INSERT, UPDATE ON {full} TO the source's user)",
            e.message
        ))),
        Err(e) => Err(advance_error(e, sync, &table)),
    }
}

fn advance_error(e: DbError, sync: &str, table: &str) -> PluginError {
    e.into_plugin_error(&format!(
        "sync `{sync}`: recording acknowledged rows in `{SCHEMA}.{table}`"
    ))
}

/// One element of a text-array literal, quoted.
fn array_element(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        if ch == '"' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_sync_names_are_refused_with_the_limit() {
        assert_eq!(snapshot_table("crm").unwrap(), "snapshot_crm");
        let e = snapshot_table(&"x".repeat(60)).unwrap_err();
        assert!(format!("{e:?}").contains("63-byte"), "{e:?}");
    }

    #[test]
    fn array_elements_escape_quotes_and_backslashes() {
        let mut out = String::new();
        array_element(&mut out, "a\"b\\c");
        assert_eq!(out, r#""a\"b\\c""#);
    }
}
