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
        .config_schema(Config::schema())
    }

    fn check(config: &str) -> Result<(), PluginError> {
        <postgres::Postgres as Source>::check(config)
    }

    fn discover(config: &str) -> Result<Vec<ObjectInfo>, PluginError> {
        let config = Config::parse(config)?;
        let mut conn = Connection::connect(&config)?;
        let tables = catalog::tables(&mut conn, None);
        conn.terminate();
        Ok(tables?.into_iter().map(|t| t.object_info()).collect())
    }

    fn open(config: &str, target: WriteTarget) -> Result<PgWriter, PluginError> {
        let config = Config::parse(config)?;
        PgWriter::open(config, target)
    }
}

sluice_sdk::export_destination!(PostgresDestination);
