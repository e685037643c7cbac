//! The local PostgreSQL the warehouse emulators (Snowflake, Databricks) execute
//! their statements on: creating the emulator's database, opening sessions,
//! cancelling a running query, and printing its URL without the password.

use std::collections::HashMap;

use anyhow::Context as _;
use parking_lot::Mutex;
use tokio_postgres::{CancelToken, Client, NoTls};

/// Opens a session; its connection task runs until the client is dropped.
pub(crate) async fn connect(
    config: &tokio_postgres::Config,
) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "emulator PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// Creates the database named in `url` if missing, then runs `setup_sql` in it
/// (the emulator's domains, functions and catalog views). `emulator` names the
/// API in errors.
pub(crate) async fn prepare_database(
    url: &str,
    setup_sql: &str,
    emulator: &str,
) -> anyhow::Result<tokio_postgres::Config> {
    let config: tokio_postgres::Config = url
        .parse()
        .with_context(|| format!("the {emulator} emulator's PostgreSQL URL {url:?} is invalid"))?;
    let database = config
        .get_dbname()
        .with_context(|| format!("the PostgreSQL URL {url:?} names no database"))?
        .to_owned();
    let mut maintenance = config.clone();
    maintenance.dbname("postgres");
    let admin = connect(&maintenance)
        .await
        .with_context(|| format!("connecting to PostgreSQL for {}", redact_password(url)))?;
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
        .await
        .context("looking up the emulator's database")?
        .is_some();
    if !exists {
        let create = format!("CREATE DATABASE \"{}\"", database.replace('"', "\"\""));
        if let Err(err) = admin.batch_execute(&create).await {
            // Another emulator may have created it at the same moment.
            if err.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) {
                return Err(err).with_context(|| format!("creating database {database}"));
            }
        }
    }
    let client = connect(&config)
        .await
        .with_context(|| format!("connecting to PostgreSQL database {database}"))?;
    client.batch_execute(setup_sql).await.with_context(|| {
        format!("installing the {emulator} emulator's domains and catalog views")
    })?;
    Ok(config)
}

/// Cancels the query running in the session `token` belongs to, if any; a
/// failure is only logged (the statement is being abandoned anyway).
pub(crate) async fn cancel_query(token: &Mutex<Option<CancelToken>>) {
    let token = token.lock().clone();
    if let Some(token) = token {
        if let Err(err) = token.cancel_query(NoTls).await {
            tracing::debug!(error = %err, "cancelling a PostgreSQL query failed");
        }
    }
}

/// One result column as the PostgreSQL catalog describes it.
#[derive(Debug, Clone)]
pub(crate) struct ResultColumn {
    pub name: String,
    /// The type's own name: a domain's (`sf_variant`, `db_array`), not its base type's.
    pub type_name: String,
    pub typmod: i32,
    pub nullable: bool,
    /// For a table column: its schema and table.
    pub source: Option<(String, String)>,
    /// For a table column: its comment.
    pub comment: Option<String>,
}

/// The result columns of `sql`, with the declared types of table columns
/// (a result description names a domain's base type, so those are looked up).
pub(crate) async fn describe(
    client: &Client,
    sql: &str,
) -> Result<Vec<ResultColumn>, tokio_postgres::Error> {
    let prepared = client.prepare(sql).await?;
    let mut tables: HashMap<u32, HashMap<i16, ResultColumn>> = HashMap::new();
    let mut columns = Vec::with_capacity(prepared.columns().len());
    for column in prepared.columns() {
        let declared = match (column.table_oid(), column.column_id()) {
            (Some(oid), Some(attnum)) if oid != 0 => {
                if let std::collections::hash_map::Entry::Vacant(slot) = tables.entry(oid) {
                    slot.insert(table_columns(client, oid).await?);
                }
                tables.get(&oid).and_then(|a| a.get(&attnum)).cloned()
            }
            _ => None,
        };
        columns.push(match declared {
            Some(declared) => ResultColumn {
                name: column.name().to_owned(),
                ..declared
            },
            None => ResultColumn {
                name: column.name().to_owned(),
                type_name: column.type_().name().to_owned(),
                typmod: -1,
                nullable: true,
                source: None,
                comment: None,
            },
        });
    }
    Ok(columns)
}

/// The columns of table `oid`, by attribute number.
async fn table_columns(
    client: &Client,
    oid: u32,
) -> Result<HashMap<i16, ResultColumn>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT a.attnum, a.attname::text, t.typname::text, a.atttypmod, a.attnotnull, n.nspname::text, \
             c.relname::text, col_description(a.attrelid, a.attnum) \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE a.attrelid = $1 AND a.attnum > 0",
            &[&oid],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let column = ResultColumn {
                name: r.get(1),
                type_name: r.get(2),
                typmod: r.get(3),
                nullable: !r.get::<_, bool>(4),
                source: Some((r.get(5), r.get(6))),
                comment: r.get(7),
            };
            (r.get::<_, i16>(0), column)
        })
        .collect())
}

/// `postgres://user:***@host/db`: the URL as banners may print it.
pub(crate) fn redact_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(
            redact_password("postgres://u:secret@h:5432/d"),
            "postgres://u:***@h:5432/d"
        );
        assert_eq!(redact_password("postgres://u@h/d"), "postgres://u@h/d");
    }
}
