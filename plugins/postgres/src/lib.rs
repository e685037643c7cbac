//! `postgres`: a Sluice source that streams tables and SQL queries out of
//! PostgreSQL. It speaks the wire protocol itself (via `postgres-protocol`)
//! over the `net` crate's socket: wasi:sockets filtered by the plugin's
//! grant, upgraded to TLS through the host's wasi:tls as `sslmode` says.
//!
//! - Auth: trust, cleartext, MD5 and SCRAM-SHA-256 (no channel binding).
//! - Reads run in one `REPEATABLE READ READ ONLY` transaction and stream a
//!   batch per `next` through a portal (see [`reader`]).
//! - Types map as documented on [`types::Kind`] and in [`decode`]: numeric
//!   becomes an exact decimal (NaN/±Infinity become floats), timestamps
//!   become µs since the Unix epoch (timestamp without time zone read as
//!   UTC), ±infinity dates and timestamps become the text `infinity` /
//!   `-infinity`, arrays become JSON arrays.

pub mod config;
pub mod conn;
mod decode;
mod discover;
pub mod error;
pub mod reader;
pub mod types;
pub mod warehouse;

use config::Config;
use conn::Connection;
use reader::PgReader;
use sluice_sdk::prelude::*;
use sluice_sdk::{DeliveredRow, DiffRequest};

pub struct Postgres;

impl Source for Postgres {
    type Reader = PgReader;

    fn spec() -> PluginSpec {
        PluginSpec::new(
            "postgres",
            env!("CARGO_PKG_VERSION"),
            "Streams tables and SQL queries out of PostgreSQL (TLS by sslmode)",
        )
        .capability("postgres://${config.host}:${config.port}")
        .batch_size(5000)
        .config_schema(Config::schema())
    }

    fn check(config: &str) -> Result<(), PluginError> {
        let config = Config::parse(config)?;
        let mut conn = Connection::connect(&config)?;
        let rows = conn.simple_query("SELECT 1");
        conn.terminate();
        let rows = rows?;
        match rows.as_slice() {
            [row] if row.first().and_then(|v| v.as_deref()) == Some("1") => Ok(()),
            _ => Err(PluginError::Permanent(format!(
                "`SELECT 1` on {} returned {rows:?} instead of one row with 1",
                config.target()
            ))),
        }
    }

    fn discover(config: &str) -> Result<Vec<ObjectInfo>, PluginError> {
        let config = Config::parse(config)?;
        let mut conn = Connection::connect(&config)?;
        let objects = discover::discover(&mut conn);
        conn.terminate();
        objects
    }

    fn read(config: &str, request: ReadRequest) -> Result<PgReader, PluginError> {
        let config = Config::parse(config)?;
        let sql = match request {
            ReadRequest::Query(sql) => sql,
            ReadRequest::Object(name) => reader::object_query(&name)?,
        };
        PgReader::open(&config, &sql)
    }
}

/// `diff: warehouse`: the sync's snapshot in schema `sluice`, the diff in
/// SQL (see [`warehouse`]).
impl WarehouseDiff for Postgres {
    type DiffReader = PgReader;

    fn diff(config: &str, request: DiffRequest) -> Result<PgReader, PluginError> {
        let config = Config::parse(config)?;
        warehouse::open_diff(&config, request)
    }

    fn advance(config: &str, sync: &str, rows: Vec<DeliveredRow>) -> Result<(), PluginError> {
        let config = Config::parse(config)?;
        warehouse::advance(&config, sync, rows)
    }
}

// The `postgres-destination` component links this crate for its
// connection code without the feature, so it exports only its own world.
#[cfg(feature = "component")]
sluice_sdk::export_warehouse_diff_source!(Postgres);
