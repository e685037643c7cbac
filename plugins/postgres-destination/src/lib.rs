//! `postgres-destination`: a Sluice destination that writes rows into a
//! PostgreSQL table. The connection, authentication, errors and type
//! mapping are the `postgres` source's (this crate links it without its
//! source-world export); this crate adds the catalog of writable tables
//! and the statements of each write mode.
//!
//! - Every `write` is one transaction: one multi-row statement per piece
//!   of the batch (at most 32767 parameters each), committed together.
//! - A statement that fails on a row's data (SQLSTATE classes 21, 22, 23,
//!   27, 44 and P0: constraints, bad values, triggers) is retried inside a
//!   new transaction by bisection under savepoints, so only the rows the
//!   database refuses are rejected, each with the database's message.
//! - TLS as the source does it (`sslmode`, `sslrootcert`).

pub mod catalog;
pub mod encode;
pub mod writer;

use postgres::config::Config;
use postgres::conn::Connection;
use sluice_sdk::prelude::*;
use writer::PgWriter;

pub struct PostgresDestination;

impl Destination for PostgresDestination {
    type Writer = PgWriter;

    fn spec() -> PluginSpec {
        PluginSpec::new(
            "postgres-destination",
            env!("CARGO_PKG_VERSION"),
            "Upserts, updates, inserts, deletes and appends rows in PostgreSQL tables (TLS by sslmode)",
        )
        .capability("postgres://${config.host}:${config.port}")
        .batch_size(1000)
        .config_schema(destination_schema())
    }

    fn check(config: &str) -> Result<(), PluginError> {
        parse_config(config)?;
        <postgres::Postgres as Source>::check(config)
    }

    fn discover(config: &str) -> Result<Vec<ObjectInfo>, PluginError> {
        let config = parse_config(config)?;
        let mut conn = Connection::connect(&config)?;
        let tables = catalog::tables(&mut conn, None);
        conn.terminate();
        Ok(tables?.into_iter().map(|t| t.object_info()).collect())
    }

    fn open(config: &str, target: WriteTarget) -> Result<PgWriter, PluginError> {
        let config = parse_config(config)?;
        PgWriter::open(config, target)
    }
}

/// The source's config, without its Redshift mode: writes to Redshift
/// (COPY from S3, no multi-row upserts with ON CONFLICT) are not built.
fn parse_config(text: &str) -> Result<Config, PluginError> {
    let config = Config::parse(text)?;
    if config.redshift {
        return Err(PluginError::Config(
            "`redshift: true` is for the postgres source only; the postgres destination does not write to Amazon Redshift".into(),
        ));
    }
    Ok(config)
}

/// The source's schema without `redshift`.
fn destination_schema() -> serde_json::Value {
    let mut schema = Config::schema();
    if let Some(properties) = schema["properties"].as_object_mut() {
        properties.remove("redshift");
    }
    schema
}

sluice_sdk::export_destination!(PostgresDestination);
