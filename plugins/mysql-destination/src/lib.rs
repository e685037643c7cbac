//! `mysql-destination`: a Sluice destination that writes rows into a MySQL
//! or MariaDB table. The connection, authentication, errors and type
//! mapping are the `mysql` source's (this crate links it without its
//! source-world export); this crate adds the catalog of tables, the SQL
//! literals and the statements of each write mode.
//!
//! - Every `write` is one transaction: multi-row statements (each within
//!   the server's `max_allowed_packet`), committed together.
//! - The session runs in strict mode with `NO_BACKSLASH_ESCAPES`, so a
//!   value the column cannot hold is an error rather than a warning, and a
//!   quoted literal means exactly its text.
//! - A statement that fails on a row's data (duplicate keys, constraints,
//!   bad values, a trigger's SIGNAL) is retried by bisection: MySQL rolls
//!   back only the failed statement, so the halves run in the same
//!   transaction, down to the rows the database refuses, each rejected
//!   with the database's message.
//! - TLS as the source does it (`ssl_mode`, `ssl_ca`).

pub mod catalog;
pub mod literal;
pub mod session;
pub mod writer;

use mysql::config::Config;
use sluice_sdk::prelude::*;
use writer::MyWriter;

pub struct MySqlDestination;

impl Destination for MySqlDestination {
    type Writer = MyWriter;

    fn spec() -> PluginSpec {
        PluginSpec::new(
            "mysql-destination",
            env!("CARGO_PKG_VERSION"),
            "Upserts, updates, inserts, deletes and appends rows in MySQL and MariaDB tables (TLS by ssl_mode)",
        )
        .capability("mysql://${config.host}:${config.port}")
        .batch_size(1000)
        .config_schema(Config::schema())
    }

    fn check(config: &str) -> Result<(), PluginError> {
        <mysql::MySql as Source>::check(config)
    }

    fn discover(config: &str) -> Result<Vec<ObjectInfo>, PluginError> {
        let config = Config::parse(config)?;
        let mut conn = session::connect(&config)?;
        let tables = catalog::tables(&mut conn, None);
        conn.terminate();
        Ok(tables?.into_iter().map(|t| t.object_info()).collect())
    }

    fn open(config: &str, target: WriteTarget) -> Result<MyWriter, PluginError> {
        let config = Config::parse(config)?;
        MyWriter::open(config, target)
    }
}

sluice_sdk::export_destination!(MySqlDestination);
