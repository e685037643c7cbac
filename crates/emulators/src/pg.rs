//! The PostgreSQL plumbing the warehouse emulators share (Snowflake, BigQuery):
//! connecting, creating an emulator's database with its helper objects, and
//! keeping passwords out of banners.

use anyhow::Context as _;
use tokio_postgres::{Client, NoTls};

/// A session on `config`; its connection task ends with the client.
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

/// Creates the database named in `url` if missing and runs `setup_sql` in it
/// (the emulator's domains, functions and catalog views). `api` names the
/// emulator in errors.
pub(crate) async fn prepare_database(
    url: &str,
    setup_sql: &str,
    api: &str,
) -> anyhow::Result<tokio_postgres::Config> {
    let config: tokio_postgres::Config = url
        .parse()
        .with_context(|| format!("the {api} emulator's PostgreSQL URL {url:?} is invalid"))?;
    let database = config
        .get_dbname()
        .with_context(|| format!("the PostgreSQL URL {url:?} names no database"))?
        .to_owned();
    let mut maintenance = config.clone();
    maintenance.dbname("postgres");
    let admin = connect(&maintenance)
        .await
        .with_context(|| format!("connecting to PostgreSQL for {url:?}"))?;
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
    client
        .batch_execute(setup_sql)
        .await
        .with_context(|| format!("installing the {api} emulator's helpers in {database}"))?;
    Ok(config)
}

/// `postgres://user:secret@host/db` as `postgres://user:***@host/db`.
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
